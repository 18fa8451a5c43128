"""One attempt of a job and what follows it, wherever the attempt runs.

A Celery worker runs attempts (``tasks.run_generation``), and so does a web process
for the first attempt of a synchronous API call (``generations.api.inline``). Either
way, after the attempt the job's next attempt goes to the queue with its delay, or —
the job being over — its owner's waiting batch rows may start in the slot it freed.
"""

from __future__ import annotations

from generations import batches, engine, queue


def attempt(generation_id) -> float | None:
    """Run one attempt, then queue the next (returned: its delay) or feed the batches."""
    delay = engine.run_generation(generation_id)
    if delay is not None:
        # A fresh message, not a Celery retry: the attempt count lives in the database.
        queue.enqueue([generation_id], countdown=delay)
    else:
        batches.feed_after(generation_id)
    return delay
