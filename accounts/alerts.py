"""Budget alerts: an email and a studio banner when a monthly budget is 80 % or 100 % used.

"Used" means **charged** this month (settled jobs and adjustments, net of grants), not
money merely held for jobs in progress: a reservation is a worst case that is mostly
returned, and an alert should say what really happened. Each threshold fires once per
person (or team) and month; the unique constraint on :class:`BudgetAlert` keeps that
true when several workers settle at once.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext

from accounts import limits, preferences
from accounts.models import BudgetAlert, QuotaCounter, Team, User
from accounts.periods import month_start, quota_day

log = logging.getLogger(__name__)


def check(user: User) -> list[BudgetAlert]:
    """Fire the alerts ``user`` (and their team) have newly earned this month."""
    month = month_start(quota_day())
    fired = _fire(month, limits.for_user(user).monthly_budget, user=user)
    if user.team_id and user.team.shared_monthly_budget_micros:
        fired += _fire(month, user.team.shared_monthly_budget_micros, team=user.team)
    for alert in fired:
        send(alert)
    return fired


def crossed(generation, charged: int) -> bool:
    """Whether charging ``charged`` for ``generation``, just now in this transaction,
    took its owner's month (or their team's) over an alert threshold: only then has
    :func:`check` something to fire. Budget edits, grants and adjustments are caught by
    :func:`check_all` on beat."""
    if charged <= 0:
        return False
    user = generation.user
    budgets = [(limits.holder(user).monthly_budget_micros, {"user_id": user.pk})]
    if user.team_id and user.team.shared_monthly_budget_micros:
        budgets.append((user.team.shared_monthly_budget_micros, {"team_id": user.team_id}))
    month = month_start(generation.quota_day)
    for budget, owner in budgets:
        if not budget:
            continue
        spent = (
            QuotaCounter.objects.filter(period=QuotaCounter.MONTH, period_start=month, **owner)
            .values_list("micros_spent", flat=True)
            .first()
        ) or 0
        if any((spent - charged) * 100 < t * budget <= spent * 100 for t in BudgetAlert.THRESHOLDS):
            return True
    return False


def _fire(month, budget: int | None, **owner) -> list[BudgetAlert]:
    if not budget:
        return []
    counter = QuotaCounter.objects.filter(
        period=QuotaCounter.MONTH, period_start=month, **owner
    ).first()
    spent = counter.micros_spent if counter else 0
    fired = []
    for threshold in BudgetAlert.THRESHOLDS:
        if spent * 100 < threshold * budget:
            break
        try:
            with transaction.atomic():
                fired.append(
                    BudgetAlert.objects.create(
                        period_start=month,
                        threshold=threshold,
                        spent_micros=spent,
                        budget_micros=budget,
                        **owner,
                    )
                )
        except IntegrityError:
            continue  # fired before, or by a concurrent settle
    return fired


def send(alert: BudgetAlert) -> bool:
    """Email an alert's recipients, each in the language of their account (one email per
    language); a failure is logged and retried by the beat task."""
    recipients = _recipients(alert)
    if not recipients:
        return False
    by_language: dict[str, list[str]] = {}
    for person in recipients:
        by_language.setdefault(_language(person), []).append(person.email)
    try:
        for language, emails in by_language.items():
            with translation.override(language):
                send_mail(subject(alert), body(alert), None, emails)
    except Exception:  # SMTP down: keep the alert, try again later
        log.exception("could not email budget alert %s", alert.pk)
        return False
    BudgetAlert.objects.filter(pk=alert.pk).update(emailed_at=timezone.now())
    return True


def _language(person: User) -> str:
    """The language an email to ``person`` is written in: their account's, else the site's."""
    return person.language if person.language in preferences.languages() else settings.LANGUAGE_CODE


def _recipients(alert: BudgetAlert) -> list[User]:
    if alert.user_id:
        return [alert.user]
    admins = alert.team.members.filter(is_team_admin=True, is_active=True)
    if not admins.exists():
        admins = User.objects.filter(is_staff=True, is_active=True)
    return list(admins.order_by("email"))


def subject(alert: BudgetAlert) -> str:
    """The email's subject, in the active language."""
    if alert.user_id:
        return gettext("nanoweb: %(percent)s %% of your monthly budget used") % {
            "percent": alert.threshold
        }
    return gettext("nanoweb: %(percent)s %% of team %(team)s's monthly budget used") % {
        "percent": alert.threshold,
        "team": alert.team.name,
    }


def body(alert: BudgetAlert) -> str:
    """The email's text, in the active language."""
    url = settings.NANOWEB_BASE_URL.rstrip("/") + reverse("usage")
    if alert.team_id:
        url += "?view=team"
    see = gettext("See where it went: %(url)s") % {"url": url}
    return f"{alert.headline}\n\n{see}\n"


def current_for(user: User) -> BudgetAlert | None:
    """The most serious alert of this month for ``user`` or their team, for the banner."""
    owner = Q(user=user) | (Q(team_id=user.team_id) if user.team_id else Q(pk__in=[]))
    return (
        BudgetAlert.objects.filter(owner, period_start=month_start(quota_day()))
        .select_related("team")
        .order_by("-threshold", "-created")
        .first()
    )


def check_all() -> int:
    """Beat: catch grants, adjustments and budget edits, and resend failed emails."""
    month = month_start(quota_day())
    counters = QuotaCounter.objects.filter(
        period=QuotaCounter.MONTH, period_start=month, micros_spent__gt=0
    )
    fired = 0
    for user in User.objects.filter(pk__in=counters.values("user_id")).select_related("team"):
        fired += len(check(user))
    for team in Team.objects.filter(pk__in=counters.values("team_id")):
        fired += len(_fire(month, team.shared_monthly_budget_micros, team=team))
    for alert in BudgetAlert.objects.filter(emailed_at=None, period_start=month):
        send(alert)  # new team alerts, and emails that failed before
    return fired
