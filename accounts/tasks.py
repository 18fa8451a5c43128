from celery import shared_task

from accounts import alerts
from accounts.models import User


@shared_task(ignore_result=True)
def check_budget_alerts(user_id: int | None = None) -> int:
    """After a charge: one person's alerts. From beat (no id): everyone's."""
    if user_id is None:
        return alerts.check_all()
    user = User.objects.select_related("team").filter(pk=user_id).first()
    return len(alerts.check(user)) if user else 0
