"""Thin Celery tasks: take ids, call domain code, schedule the next attempt."""

from celery import shared_task

from generations import engine


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_generation(generation_id: str) -> None:
    delay = engine.run_generation(generation_id)
    if delay is not None:
        # A fresh message, not self.retry(): the attempt count lives in the database.
        run_generation.apply_async((generation_id,), countdown=delay)


@shared_task
def reconcile() -> dict:
    return engine.reconcile()
