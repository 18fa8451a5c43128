import logging
import os

from celery import Celery
from django.conf import settings

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoweb.settings")

# Housekeeping that beat sends every few seconds; its routine "received" and
# "succeeded" lines would bury everything else in the log (and `make run`'s sign-in
# banner). Failures are still logged, at WARNING and above.
HOUSEKEEPING = (
    "generations.tasks.sweep",
    "generations.tasks.feed_batches",
    "generations.tasks.reconcile",
    "generations.tasks.purge_deleted_images",
)


class QuietHousekeeping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(f"{name}[" in message for name in HOUSEKEEPING)


for _name in ("celery.worker.strategy", "celery.app.trace"):  # "received", "succeeded"
    logging.getLogger(_name).addFilter(QuietHousekeeping())

app = Celery("nanoweb")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    "reconcile-jobs": {"task": "generations.tasks.reconcile", "schedule": 60.0},
    "audit-ledger": {"task": "generations.tasks.audit_ledger", "schedule": 3600.0},
    "budget-alerts": {"task": "accounts.tasks.check_budget_alerts", "schedule": 900.0},
    "purge-deleted-images": {"task": "generations.tasks.purge_deleted_images", "schedule": 300.0},
    "feed-batches": {"task": "generations.tasks.feed_batches", "schedule": 30.0},
}


@app.on_after_configure.connect
def _schedule_sweep(sender, **kwargs):
    """Often (settings are read here, once Django is set up, not when this module is
    imported): a killed worker's job restarts within a lease plus one sweep."""
    sender.conf.beat_schedule["sweep-jobs"] = {
        "task": "generations.tasks.sweep",
        "schedule": float(settings.NANOWEB_SWEEP_SECONDS),
    }
