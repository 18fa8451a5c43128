"""Thin Celery tasks: take ids, call domain code, schedule the next attempt.

Domain code sends these by name through :mod:`generations.queue`; the names are
the module path and function name Celery gives a shared task.
"""

import logging

from celery import shared_task

from accounts import quotas
from generations import batches, economy, engine, gallery, polling, queue, runner, webhooks

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_generation(generation_id: str) -> None:
    runner.attempt(generation_id)


@shared_task
def feed_batches() -> int:
    """Every 30 s: start waiting batch rows that now fit (a safety net for feed_after,
    and how a batch stalled by a daily limit resumes after midnight)."""
    return batches.feed_waiting()


@shared_task
def sweep() -> dict:
    """Every few seconds: jobs of dead workers and lost messages go back to the queue."""
    return engine.sweep()


@shared_task
def reconcile() -> dict:
    """Every minute: the sweep, plus jobs past their deadline and old limiter state, and
    the Batch API jobs whose next look the broker lost."""
    return {**engine.reconcile(), "economy_requeued": economy.reconcile()}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_economy_batch(upstream_batch_id: int) -> None:
    """Submit, poll or store one Batch API job; the next look is a fresh message with a
    countdown, so no worker waits while Google works."""
    delay = economy.run(upstream_batch_id)
    if delay is not None:
        queue.run_economy_batch([upstream_batch_id], countdown=delay)


@shared_task
def audit_ledger() -> dict:
    """Hourly: release stale reservations, then check that the ledger equals the counters."""
    released = engine.release_stale_reservations()
    problems = quotas.ledger_problems()
    for problem in problems:
        logger.error("ledger check: %s", problem)
    return {
        "released": released,
        "problems": len(problems),
        "webhooks_pruned": webhooks.prune(),
    }


@shared_task
def purge_deleted_images() -> int:
    """Every few minutes: remove the files of images deleted longer ago than the undo window."""
    return gallery.purge_deleted()


@shared_task(acks_late=True)
def cancel_upstream(generation_id: str) -> None:
    """A job ended (cancelled, past its deadline) while a queue-style upstream had it."""
    polling.cancel_upstream(generation_id)
