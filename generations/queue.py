"""The one door to Celery: domain code hands work to the workers only through here.

Tasks are sent by name, so no domain module imports the task modules (interfaces)
and the import graph runs one way. The names are those ``generations.tasks`` and
``accounts.tasks`` register.
"""

from __future__ import annotations

import logging

from celery import current_app

log = logging.getLogger(__name__)

RUN_GENERATION = "generations.tasks.run_generation"
CANCEL_UPSTREAM = "generations.tasks.cancel_upstream"
RUN_ECONOMY_BATCH = "generations.tasks.run_economy_batch"
CHECK_BUDGET_ALERTS = "accounts.tasks.check_budget_alerts"


def enqueue(ids, *, countdown: float | None = None) -> None:
    """Run the next attempt of each job (after ``countdown`` seconds, if given)."""
    for pk in ids:
        current_app.send_task(RUN_GENERATION, args=(str(pk),), countdown=countdown)


def run_economy_batch(ids, *, countdown: float | None = None) -> None:
    """Submit, poll or store the results of each Batch API job (UpstreamBatch ids). A
    lost message is harmless: the reconciler sends it again (economy.reconcile)."""
    for pk in ids:
        current_app.send_task(RUN_ECONOMY_BATCH, args=(pk,), countdown=countdown)


def waiting_messages() -> int | None:
    """Messages waiting in the broker's queue for a worker (not those a worker holds),
    or None when the broker cannot say."""
    try:
        with current_app.pool.acquire(block=True, timeout=5) as conn:
            queue = current_app.conf.task_default_queue
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except Exception:
        log.info("could not count the broker's waiting messages", exc_info=True)
        return None


def cancel_upstream(ids) -> None:
    """Call off the queue-style upstream requests of jobs that ended without them (a
    cancel, a deadline). A broker hiccup leaves the request to run out upstream: it is
    logged, and the job's money is already settled."""
    for pk in ids:
        try:
            current_app.send_task(CANCEL_UPSTREAM, args=(str(pk),))
        except Exception:
            log.warning("could not queue the upstream cancel of job %s", pk, exc_info=True)


def check_budget_alerts(user_id: int) -> None:
    """Alerts are a courtesy: a broker hiccup must not touch the job (beat catches up)."""
    try:
        current_app.send_task(CHECK_BUDGET_ALERTS, args=(user_id,))
    except Exception:
        log.warning("could not queue the budget alert check for user %s", user_id, exc_info=True)
