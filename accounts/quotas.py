"""The only code that moves money.

Three movements per job, each one ledger row and one counter update in the same
transaction: ``reserve`` (admission, a conditional UPDATE that cannot overrun a
limit even under concurrency), then exactly one of ``settle`` (actual cost) or
``release`` (nothing charged). A unique constraint on (generation, kind) means a
redelivered task can never settle or release twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from accounts.models import LedgerEntry, QuotaCounter, User, format_usd
from accounts.periods import month_start, next_midnight, next_month_start, quota_day


class QuotaExceeded(Exception):
    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit


@dataclass(frozen=True)
class QuotaSummary:
    day: dt.date
    images_today: int  # used + reserved
    daily_limit: int | None
    spent_month: int
    reserved_month: int
    monthly_budget: int | None

    @property
    def images_left(self) -> int | None:
        return None if self.daily_limit is None else max(0, self.daily_limit - self.images_today)

    @property
    def budget_left(self) -> int | None:
        if self.monthly_budget is None:
            return None
        return max(0, self.monthly_budget - self.spent_month - self.reserved_month)

    @property
    def month_resets_on(self) -> dt.date:
        return next_month_start(self.day)


def _counter_keys(day: dt.date) -> list[tuple[str, dt.date]]:
    return [(QuotaCounter.DAY, day), (QuotaCounter.MONTH, month_start(day))]


def _ensure_counters(user: User, day: dt.date) -> None:
    QuotaCounter.objects.bulk_create(
        [QuotaCounter(user=user, period=p, period_start=s) for p, s in _counter_keys(day)],
        ignore_conflicts=True,
    )


def _counters(user: User, day: dt.date):
    q = Q()
    for period, start in _counter_keys(day):
        q |= Q(period=period, period_start=start)
    return QuotaCounter.objects.filter(q, user=user)


def summary(user: User, now: dt.datetime | None = None) -> QuotaSummary:
    day = quota_day(now)
    rows = {c.period: c for c in _counters(user, day)}
    d, m = rows.get(QuotaCounter.DAY), rows.get(QuotaCounter.MONTH)
    return QuotaSummary(
        day=day,
        images_today=(d.images_used + d.images_reserved) if d else 0,
        daily_limit=user.daily_image_limit,
        spent_month=m.micros_spent if m else 0,
        reserved_month=m.micros_reserved if m else 0,
        monthly_budget=user.monthly_budget_micros,
    )


def reserve(user: User, generations: Sequence, per_image_micros: int) -> None:
    """Admit ``generations`` (saved, one image each, same quota day) or raise.

    Must run inside the caller's transaction, which also created the rows, so a
    refusal rolls everything back.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("reserve() must run inside transaction.atomic()")
    images, micros = len(generations), per_image_micros * len(generations)
    day = generations[0].quota_day
    _ensure_counters(user, day)

    day_row = QuotaCounter.objects.filter(user=user, period=QuotaCounter.DAY, period_start=day)
    if user.daily_image_limit is not None:
        day_row = day_row.filter(
            images_used__lte=user.daily_image_limit - images - F("images_reserved"))
    if not day_row.update(images_reserved=F("images_reserved") + images,
                          micros_reserved=F("micros_reserved") + micros):
        raise QuotaExceeded(_daily_message(user, images), limit="daily_images")

    month_row = QuotaCounter.objects.filter(
        user=user, period=QuotaCounter.MONTH, period_start=month_start(day))
    if user.monthly_budget_micros is not None:
        month_row = month_row.filter(
            micros_spent__lte=user.monthly_budget_micros - micros - F("micros_reserved"))
    if not month_row.update(images_reserved=F("images_reserved") + images,
                            micros_reserved=F("micros_reserved") + micros):
        raise QuotaExceeded(_budget_message(user, micros), limit="monthly_budget")

    LedgerEntry.objects.bulk_create([
        LedgerEntry(user=user, team=user.team, generation=g, kind=LedgerEntry.RESERVE,
                    quota_day=day, reserved_delta=per_image_micros, images_reserved_delta=1,
                    reason=f"reserved up to {format_usd(per_image_micros)}")
        for g in generations
    ])


def settle(generation, actual_micros: int, *, images: int = 1, reason: str = "") -> bool:
    """Charge the actual cost of a job and return the rest of its reservation.

    Returns False (and changes nothing) if the job was already settled or released.
    """
    reserved = generation.reserved_micros
    if not reason:
        reason = f"charged {format_usd(actual_micros)} of {format_usd(reserved)} reserved"
        if reserved > actual_micros:
            reason += f"; {format_usd(reserved - actual_micros)} returned"
    return _close(generation, LedgerEntry.SETTLE, spent=actual_micros, images=images,
                  reason=reason)


def release(generation, *, reason: str) -> bool:
    """Return a job's whole reservation: nothing was charged."""
    return _close(generation, LedgerEntry.RELEASE, spent=0, images=0, reason=reason)


def _close(generation, kind: str, *, spent: int, images: int, reason: str) -> bool:
    if LedgerEntry.objects.filter(
        generation=generation, kind__in=[LedgerEntry.SETTLE, LedgerEntry.RELEASE]
    ).exists():
        return False
    entry = LedgerEntry(
        user_id=generation.user_id, team_id=generation.team_id, generation=generation,
        kind=kind, quota_day=generation.quota_day,
        reserved_delta=-generation.reserved_micros, spent_delta=spent,
        images_reserved_delta=-1, images_used_delta=images, reason=reason[:300],
    )
    try:
        with transaction.atomic():
            entry.save()
            _counters(generation.user, generation.quota_day).update(
                micros_reserved=F("micros_reserved") - generation.reserved_micros,
                micros_spent=F("micros_spent") + spent,
                images_reserved=F("images_reserved") - 1,
                images_used=F("images_used") + images,
            )
    except IntegrityError:
        return False  # a concurrent settle/release won; ours changed nothing
    return True


def ledger_problems() -> list[str]:
    """Every counter must equal the sum of the ledger rows of its period."""
    problems = []
    for counter in QuotaCounter.objects.select_related("user"):
        entries = LedgerEntry.objects.filter(user_id=counter.user_id)
        if counter.period == QuotaCounter.DAY:
            entries = entries.filter(quota_day=counter.period_start)
        else:
            entries = entries.filter(quota_day__gte=counter.period_start,
                                     quota_day__lt=next_month_start(counter.period_start))
        sums = entries.aggregate(r=Sum("reserved_delta"), s=Sum("spent_delta"),
                                 ir=Sum("images_reserved_delta"), iu=Sum("images_used_delta"))
        expected = (sums["r"] or 0, sums["s"] or 0, sums["ir"] or 0, sums["iu"] or 0)
        actual = (counter.micros_reserved, counter.micros_spent, counter.images_reserved,
                  counter.images_used)
        if expected != actual:
            problems.append(f"{counter}: counter {actual} != ledger {expected}")
    return problems


def _daily_message(user: User, wanted: int) -> str:
    s = summary(user)
    resets = next_midnight()
    hours = max(1, round((resets - timezone.now()).total_seconds() / 3600))
    return (f"Daily image limit reached: {s.images_today} of {user.daily_image_limit} images "
            f"used or in progress today, and this request needs {wanted}. The limit resets at "
            f"midnight {resets.tzname()} (in about {hours} h).")


def _budget_message(user: User, wanted: int) -> str:
    s = summary(user)
    return (f"Monthly budget reached: this request may cost up to {format_usd(wanted)}, and "
            f"{format_usd(s.budget_left)} of your {format_usd(user.monthly_budget_micros)} "
            f"budget is left. It resets on {s.month_resets_on:%B} 1.")
