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
CHECK_BUDGET_ALERTS = "accounts.tasks.check_budget_alerts"


def enqueue(ids, *, countdown: float | None = None) -> None:
    """Run the next attempt of each job (after ``countdown`` seconds, if given)."""
    for pk in ids:
        current_app.send_task(RUN_GENERATION, args=(str(pk),), countdown=countdown)


def check_budget_alerts(user_id: int) -> None:
    """Alerts are a courtesy: a broker hiccup must not touch the job (beat catches up)."""
    try:
        current_app.send_task(CHECK_BUDGET_ALERTS, args=(user_id,))
    except Exception:
        log.warning("could not queue the budget alert check for user %s", user_id, exc_info=True)
