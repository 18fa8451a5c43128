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
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from accounts import limits
from accounts.models import (
    STUDIO,
    LedgerEntry,
    QuotaCounter,
    Team,
    User,
    format_left,
    format_usd,
)
from accounts.periods import month_start, next_midnight, next_month_start, quota_day


class QuotaExceeded(Exception):
    """Admission refused; ``limit`` says which kind of limit (one of the constants)."""

    IMAGES, BUDGET, IN_PROGRESS = "images", "micros", "in_progress"

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit


@dataclass(frozen=True)
class Room:
    """What is left under the limit that binds first, and whose limit that is."""

    left: int | None  # None: nothing limits it
    limit: int | None
    by: str  # "their own monthly budget", "team Design's shared monthly budget"; "": unlimited
    shared: bool = False  # the team's total for all members, not a limit of the person's own


def _tighter(*rooms: Room) -> Room:
    limited = [r for r in rooms if r.left is not None]
    return min(limited, key=lambda r: r.left) if limited else Room(None, None, "")


@dataclass(frozen=True)
class QuotaSummary:
    day: dt.date
    images_today: int  # used + reserved
    daily_limit: int | None
    spent_month: int
    reserved_month: int
    monthly_budget: int | None
    # whose limits the person's own limits are: "own" or "team <name>" (limits.for_user)
    limits_source: str = "own"
    # the team's shared totals, checked in the same admission (zero/None without a team)
    team: str = ""
    team_images_today: int = 0
    team_daily_limit: int | None = None
    team_month_used: int = 0  # spent + reserved by all members
    team_budget: int | None = None

    @property
    def images_left(self) -> int | None:
        return None if self.daily_limit is None else max(0, self.daily_limit - self.images_today)

    @property
    def budget_left(self) -> int | None:
        if self.monthly_budget is None:
            return None
        return max(0, self.monthly_budget - self.spent_month - self.reserved_month)

    @property
    def images_room(self) -> Room:
        """Images left today under whichever daily limit leaves fewer: the person's or
        the team's shared one."""
        shared = (
            None
            if self.team_daily_limit is None
            else max(0, self.team_daily_limit - self.team_images_today)
        )
        if self.limits_source == "own":
            own = _("their own daily image limit")
        else:
            own = _("team %(team)s's member daily image limit") % {"team": self.team}
        return _tighter(
            Room(self.images_left, self.daily_limit, own),
            Room(
                shared,
                self.team_daily_limit,
                _("team %(team)s's shared daily image limit") % {"team": self.team},
                shared=True,
            ),
        )

    @property
    def budget_room(self) -> Room:
        """Money left this month under whichever budget leaves less: the person's or the
        team's shared one."""
        shared = (
            None if self.team_budget is None else max(0, self.team_budget - self.team_month_used)
        )
        if self.limits_source == "own":
            own = _("their own monthly budget")
        else:
            own = _("team %(team)s's member monthly budget") % {"team": self.team}
        return _tighter(
            Room(self.budget_left, self.monthly_budget, own),
            Room(
                shared,
                self.team_budget,
                _("team %(team)s's shared monthly budget") % {"team": self.team},
                shared=True,
            ),
        )

    @property
    def month_resets_on(self) -> dt.date:
        return next_month_start(self.day)


def _counter_keys(day: dt.date) -> list[tuple[str, dt.date]]:
    return [(QuotaCounter.DAY, day), (QuotaCounter.MONTH, month_start(day))]


def _ensure_counters(user: User, team: Team | None, day: dt.date) -> None:
    keys = _counter_keys(day)
    rows = [QuotaCounter(user=user, period=p, period_start=s) for p, s in keys]
    rows.append(
        QuotaCounter(user=user, period=QuotaCounter.LIVE, period_start=QuotaCounter.LIVE_START)
    )
    if team is not None:
        rows += [QuotaCounter(team=team, period=p, period_start=s) for p, s in keys]
    QuotaCounter.objects.bulk_create(rows, ignore_conflicts=True)


def _period_filter(day: dt.date) -> Q:
    q = Q()
    for period, start in _counter_keys(day):
        q |= Q(period=period, period_start=start)
    return q


def _counters(user: User, day: dt.date):
    return QuotaCounter.objects.filter(_period_filter(day), user=user)


def _lock_counters(user_id, team_id, day: dt.date, *, live: bool = True) -> None:
    """Lock the counter rows a change touches, always in primary-key order.

    A change updates several rows (day, month, jobs in progress, the team's day and
    month). Updated one statement at a time, or several rows in one statement, two
    transactions can take them in different orders and deadlock on PostgreSQL; taken
    here first in one order, they queue instead. (SQLite has one writer: a no-op.)
    """
    rows = Q(user=user_id) & _period_filter(day)
    if live:
        rows |= Q(user=user_id, period=QuotaCounter.LIVE, period_start=QuotaCounter.LIVE_START)
    if team_id is not None:
        rows |= Q(team=team_id) & _period_filter(day)
    list(
        QuotaCounter.objects.select_for_update(no_key=True)
        .filter(rows)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _row(period: str, start: dt.date, *, user=None, team=None):
    return QuotaCounter.objects.filter(period=period, period_start=start, user=user, team=team)


def summary(
    user: User, now: dt.datetime | None = None, mine: limits.EffectiveLimits | None = None
) -> QuotaSummary:
    """What is used and left today and this month. ``mine``: the person's limits, when
    the caller has read them already (they are read once per request)."""
    day = quota_day(now)
    team = user.team if user.team_id else None
    owners = Q(user=user) | Q(team=team) if team else Q(user=user)
    rows = {
        (c.team_id is not None, c.period): c
        for c in QuotaCounter.objects.filter(_period_filter(day)).filter(owners)
    }
    d, m = rows.get((False, QuotaCounter.DAY)), rows.get((False, QuotaCounter.MONTH))
    td, tm = rows.get((True, QuotaCounter.DAY)), rows.get((True, QuotaCounter.MONTH))
    mine = mine or limits.for_user(user)
    return QuotaSummary(
        day=day,
        images_today=(d.images_used + d.images_reserved) if d else 0,
        daily_limit=mine.daily_images,
        spent_month=m.micros_spent if m else 0,
        reserved_month=m.micros_reserved if m else 0,
        monthly_budget=mine.monthly_budget,
        limits_source=mine.source,
        team=team.name if team else "",
        team_images_today=(td.images_used + td.images_reserved) if td else 0,
        team_daily_limit=team.shared_daily_image_limit if team else None,
        team_month_used=(tm.micros_spent + tm.micros_reserved) if tm else 0,
        team_budget=team.shared_monthly_budget_micros if team else None,
    )


def reserve(
    user: User,
    generations: Sequence,
    per_image_micros: int,
    mine: limits.EffectiveLimits | None = None,
) -> None:
    """Admit ``generations`` (saved, one image each, same quota day and team) or raise.

    Every limit is a conditional UPDATE in the caller's transaction, which also
    created the rows, so a refusal anywhere rolls everything back: the person's
    daily images, monthly budget and jobs in progress, then the team's shared
    daily images and monthly budget.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("reserve() must run inside transaction.atomic()")
    images, micros = len(generations), per_image_micros * len(generations)
    day, team = generations[0].quota_day, generations[0].team
    mine = mine or limits.for_user(user)
    _ensure_counters(user, team, day)
    _lock_counters(user.pk, team.pk if team is not None else None, day)
    add = {
        "images_reserved": F("images_reserved") + images,
        "micros_reserved": F("micros_reserved") + micros,
    }

    checks = [
        (
            _row(QuotaCounter.DAY, day, user=user),
            QuotaExceeded.IMAGES,
            mine.daily_images,
            lambda: _daily_message(user, images, mine.daily_images),
        ),
        (
            _row(QuotaCounter.MONTH, month_start(day), user=user),
            QuotaExceeded.BUDGET,
            mine.monthly_budget,
            lambda: _budget_message(user, micros, mine.monthly_budget),
        ),
        (
            _row(QuotaCounter.LIVE, QuotaCounter.LIVE_START, user=user),
            QuotaExceeded.IN_PROGRESS,
            mine.max_concurrent,
            lambda: _concurrency_message(images, mine.max_concurrent),
        ),
    ]
    if team is not None:
        checks += [
            (
                _row(QuotaCounter.DAY, day, team=team),
                QuotaExceeded.IMAGES,
                team.shared_daily_image_limit,
                lambda: _team_daily_message(team, images, day),
            ),
            (
                _row(QuotaCounter.MONTH, month_start(day), team=team),
                QuotaExceeded.BUDGET,
                team.shared_monthly_budget_micros,
                lambda: _team_budget_message(team, micros, day),
            ),
        ]
    for rows, measure, limit, message in checks:
        if limit is not None:
            rows = rows.filter(_room(measure, limit, images, micros))
        in_progress = measure == QuotaExceeded.IN_PROGRESS
        change = {"images_reserved": add["images_reserved"]} if in_progress else add
        if not rows.update(**change):
            raise QuotaExceeded(message(), limit=measure)

    LedgerEntry.objects.bulk_create(
        [
            LedgerEntry(
                user=user,
                team=team,
                generation=g,
                kind=LedgerEntry.RESERVE,
                quota_day=day,
                reserved_delta=per_image_micros,
                images_reserved_delta=1,
                reason=f"reserved up to {format_usd(per_image_micros)}",
            )
            for g in generations
        ]
    )


def _room(measure: str, limit: int, images: int, micros: int) -> Q:
    """The condition under which a counter row still has room for this request."""
    if measure == QuotaExceeded.IMAGES:
        return Q(images_used__lte=limit - images - F("images_reserved"))
    if measure == QuotaExceeded.BUDGET:
        return Q(micros_spent__lte=limit - micros - F("micros_reserved"))
    return Q(images_reserved__lte=limit - images)  # jobs in progress


def settle(generation, actual_micros: int, *, images: int = 1, reason: str = "") -> bool:
    """Charge the actual cost of a job and return the rest of its reservation.

    Returns False (and changes nothing) if the job was already settled or released.
    """
    reserved = generation.reserved_micros
    if not reason:
        reason = f"charged {format_usd(actual_micros)} of {format_usd(reserved)} reserved"
        if reserved > actual_micros:
            reason += f"; {format_usd(reserved - actual_micros)} returned"
    return _close(generation, LedgerEntry.SETTLE, spent=actual_micros, images=images, reason=reason)


def release(generation, *, reason: str) -> bool:
    """Return a job's whole reservation: nothing was charged."""
    return _close(generation, LedgerEntry.RELEASE, spent=0, images=0, reason=reason)


def _close(generation, kind: str, *, spent: int, images: int, reason: str) -> bool:
    if LedgerEntry.objects.filter(
        generation=generation, kind__in=[LedgerEntry.SETTLE, LedgerEntry.RELEASE]
    ).exists():
        return False
    entry = LedgerEntry(
        user_id=generation.user_id,
        team_id=generation.team_id,
        generation=generation,
        kind=kind,
        quota_day=generation.quota_day,
        reserved_delta=-generation.reserved_micros,
        spent_delta=spent,
        images_reserved_delta=-1,
        images_used_delta=images,
        reason=reason[:300],
    )
    change = {
        "micros_reserved": F("micros_reserved") - generation.reserved_micros,
        "micros_spent": F("micros_spent") + spent,
        "images_reserved": F("images_reserved") - 1,
        "images_used": F("images_used") + images,
    }
    day = generation.quota_day
    try:
        with transaction.atomic():
            entry.save()  # first: a redelivered settle waits here, holding nothing else
            _lock_counters(generation.user_id, generation.team_id, day)
            _counters(generation.user_id, day).update(**change)
            _row(QuotaCounter.LIVE, QuotaCounter.LIVE_START, user=generation.user_id).update(
                images_reserved=F("images_reserved") - 1
            )
            if generation.team_id:
                QuotaCounter.objects.filter(_period_filter(day), team=generation.team_id).update(
                    **change
                )
    except IntegrityError:
        return False  # a concurrent settle/release won; ours changed nothing
    return True


def grant(
    user: User,
    *,
    micros: int = 0,
    images: int = 0,
    actor: User | None,
    reason: str,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Give ``user`` extra room this month (``micros``) and today (``images``).

    Recorded as negative spending, so the person's counters and the ledger stay
    equal and reports still show what was really spent (see ``kind``).
    """
    if micros < 0 or images < 0 or not (micros or images):
        raise ValueError(_("A grant gives a positive amount of money or images."))
    return _adjust_counters(user, LedgerEntry.GRANT, -micros, -images, actor, reason, now)


def adjust(
    user: User,
    *,
    micros: int = 0,
    images: int = 0,
    actor: User | None,
    reason: str,
    now: dt.datetime | None = None,
) -> LedgerEntry:
    """Correct what ``user`` spent this month (positive charges, negative refunds)."""
    if not (micros or images):
        raise ValueError(_("An adjustment changes money or images."))
    return _adjust_counters(user, LedgerEntry.ADJUST, micros, images, actor, reason, now)


def _adjust_counters(user, kind, spent: int, images: int, actor, reason: str, now):
    if not reason.strip():
        raise ValueError(_("Say why: the reason is kept in the ledger."))
    day = quota_day(now)
    with transaction.atomic():
        _ensure_counters(user, None, day)
        _lock_counters(user.pk, None, day, live=False)
        entry = LedgerEntry.objects.create(
            user=user,
            team=None,
            kind=kind,
            quota_day=day,
            spent_delta=spent,
            images_used_delta=images,
            actor=actor,
            reason=reason.strip()[:300],
        )
        _counters(user, day).update(
            micros_spent=F("micros_spent") + spent, images_used=F("images_used") + images
        )
    return entry


def open_reservations(older_than: dt.datetime):
    """The reserve entries taken before ``older_than`` whose job was never settled or
    released (their ``generation_id`` names the job). None should exist past the
    longest job deadline."""
    closed = LedgerEntry.objects.filter(kind__in=[LedgerEntry.SETTLE, LedgerEntry.RELEASE])
    return LedgerEntry.objects.filter(
        kind=LedgerEntry.RESERVE, created__lt=older_than, generation__isnull=False
    ).exclude(generation_id__in=closed.values("generation_id"))


def ledger_problems(counters=None) -> list[str]:
    """Every counter (all, or the given queryset) must equal the sum of the ledger
    rows of its owner and period."""
    problems = []
    for counter in (counters or QuotaCounter.objects.all()).select_related("user", "team"):
        if counter.user_id:
            entries = LedgerEntry.objects.filter(user_id=counter.user_id)
        else:
            entries = LedgerEntry.objects.filter(team_id=counter.team_id)
        if counter.period == QuotaCounter.DAY:
            entries = entries.filter(quota_day=counter.period_start)
        elif counter.period == QuotaCounter.MONTH:
            entries = entries.filter(
                quota_day__gte=counter.period_start,
                quota_day__lt=next_month_start(counter.period_start),
            )
        sums = entries.aggregate(
            r=Sum("reserved_delta"),
            s=Sum("spent_delta"),
            ir=Sum("images_reserved_delta"),
            iu=Sum("images_used_delta"),
        )
        if counter.period == QuotaCounter.LIVE:  # counts only the jobs in progress
            expected = (0, 0, sums["ir"] or 0, 0)
        else:
            expected = (sums["r"] or 0, sums["s"] or 0, sums["ir"] or 0, sums["iu"] or 0)
        actual = (
            counter.micros_reserved,
            counter.micros_spent,
            counter.images_reserved,
            counter.images_used,
        )
        if expected != actual:
            problems.append(f"{counter}: counter {actual} != ledger {expected}")
    return problems


# Refusals are shown in the studio and batches, in the person's language, and returned by
# the HTTP API, which answers in English (accounts.preferences).


def _month_day(day: dt.date) -> str:
    """ "December 1" (English), "12月1日" (Chinese)."""
    return date_format(day, "MONTH_DAY_FORMAT")


def _daily_message(user: User, wanted: int, limit: int) -> str:
    s = summary(user)
    return _(
        "Daily image limit reached: %(used)s of %(limit)s images used or in progress "
        "today, and this request needs %(wanted)s. %(resets)s"
    ) % {"used": s.images_today, "limit": limit, "wanted": wanted, "resets": _resets_at_midnight()}


def _up_to(micros: int) -> str:
    return format_usd(micros, STUDIO, rounding="up")


def _budget_message(user: User, wanted: int, limit: int) -> str:
    s = summary(user)
    return _(
        "Monthly budget reached: this request may cost up to %(cost)s, and %(left)s of "
        "your %(budget)s budget is left. It resets on %(resets)s."
    ) % {
        "cost": _up_to(wanted),
        "left": format_left(s.budget_left),
        "budget": format_left(limit),
        "resets": _month_day(s.month_resets_on),
    }


def _concurrency_message(wanted: int, limit: int) -> str:
    return _(
        "Too many images in progress: you may have %(limit)s at once, and this request "
        "needs %(wanted)s more. Try again when some have finished."
    ) % {"limit": limit, "wanted": wanted}


def _team_daily_message(team: Team, wanted: int, day: dt.date) -> str:
    row = _row(QuotaCounter.DAY, day, team=team).first()
    used = (row.images_used + row.images_reserved) if row else 0
    return _(
        "Team %(team)s's daily image limit reached: %(used)s of %(limit)s images used or "
        "in progress today, and this request needs %(wanted)s. %(resets)s"
    ) % {
        "team": team.name,
        "used": used,
        "limit": team.shared_daily_image_limit,
        "wanted": wanted,
        "resets": _resets_at_midnight(),
    }


def _team_budget_message(team: Team, wanted: int, day: dt.date) -> str:
    row = _row(QuotaCounter.MONTH, month_start(day), team=team).first()
    used = (row.micros_spent + row.micros_reserved) if row else 0
    left = max(0, team.shared_monthly_budget_micros - used)
    return _(
        "Team %(team)s's shared monthly budget reached: this request may cost up to "
        "%(cost)s, and %(left)s of the team's %(budget)s is left. It resets on %(resets)s."
    ) % {
        "team": team.name,
        "cost": _up_to(wanted),
        "left": format_left(left),
        "budget": format_left(team.shared_monthly_budget_micros),
        "resets": _month_day(next_month_start(day)),
    }


def _resets_at_midnight() -> str:
    """When the daily limits reset, in the quota's zone and, when it differs, in the
    person's own (the zone the request activated): "… at midnight UTC (08:00 your time)"."""
    resets = next_midnight()
    hours = max(1, round((resets - timezone.now()).total_seconds() / 3600))
    own = timezone.localtime(resets)
    if own.utcoffset() == resets.utcoffset():
        return _("The limit resets at midnight %(zone)s (in about %(hours)s h).") % {
            "zone": resets.tzname(),
            "hours": hours,
        }
    return _(
        "The limit resets at midnight %(zone)s: %(time)s your time (%(own_zone)s), "
        "in about %(hours)s h."
    ) % {
        "zone": resets.tzname(),
        "time": f"{own:%H:%M}",
        "own_zone": timezone.get_current_timezone_name(),
        "hours": hours,
    }
