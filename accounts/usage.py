"""What a person (or a team admin, for the team) sees on the usage page.

Spending here is what was **charged**: settled jobs and admin adjustments. Grants are
extra room, listed in the ledger but not drawn as spending.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field

from django.db.models import Q, Sum
from django.utils.translation import gettext

from accounts.models import LedgerEntry, QuotaCounter, Team, User
from accounts.periods import month_start, next_month_start, quota_day

CHARGES = Q(kind__in=[LedgerEntry.SETTLE, LedgerEntry.ADJUST])


@dataclass
class Bar:
    day: dt.date
    micros: int
    x: float = 0
    y: float = 0
    height: float = 0


@dataclass
class Chart:
    """A server-drawn bar chart of daily spend; geometry in SVG user units."""

    bars: list[Bar]
    top: int  # micro-USD at the top of the y axis
    width: int = 720
    height: int = 220
    left: int = 64
    bottom: int = 28
    bar_width: float = 0
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, micro-USD)
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, day)

    @property
    def plot_height(self) -> int:
        return self.height - self.bottom - 8

    @property
    def axis_y(self) -> int:
        return self.height - self.bottom


@dataclass
class Month:
    start: dt.date
    spent: int  # charged this month, net of adjustments (grants not included)
    granted: int
    budget: int | None
    chart: Chart
    projection: int | None  # spend at this pace by the month's last day (current month only)
    is_current: bool
    # When a team's shared budget binds before the person's own, the projection that
    # matters is the whole team's pace against it: its name, and that projection.
    shared_by: str = ""
    own_projection: int | None = None

    @property
    def end(self) -> dt.date:
        return next_month_start(self.start) - dt.timedelta(days=1)

    @property
    def previous(self) -> dt.date:
        return month_start(self.start - dt.timedelta(days=1))

    @property
    def next(self) -> dt.date | None:
        following = next_month_start(self.start)
        return None if following > quota_day() else following

    @property
    def projection_over_budget(self) -> bool:
        return None not in (self.projection, self.budget) and self.projection > self.budget


def bind_to_team(month: Month, team: Team, budget: int) -> Month:
    """The same month, projected as the team's spend against the team's shared budget:
    what a person sees when that budget, not their own, is the one that binds."""
    spent = (
        _entries(month.start, team=team).filter(CHARGES).aggregate(s=Sum("spent_delta"))["s"] or 0
    )
    month.own_projection = month.projection
    month.projection = _pace(spent, month.start) if month.is_current else None
    month.budget = budget
    month.shared_by = team.name
    return month


def _pace(spent: int, start: dt.date) -> int:
    """``spent`` so far this month, extended at the same daily pace to the month's last day."""
    days = calendar.monthrange(start.year, start.month)[1]
    return round(spent * days / quota_day().day)


def parse_month(text: str | None) -> dt.date:
    """``2026-11`` → the 1st of that month; empty → this month. ValueError otherwise."""
    if not text:
        return month_start(quota_day())
    try:
        start = dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ValueError(
            gettext("“%(text)s” is not a month; use the form 2026-11.") % {"text": text}
        ) from None
    if start > quota_day() or start.year < 2000:
        raise ValueError(gettext("Choose a month between 2000 and this month."))
    return start


def month(
    start: dt.date, *, user: User | None = None, team: Team | None = None, budget: int | None
) -> Month:
    entries = _entries(start, user=user, team=team)
    per_day = dict(
        entries.filter(CHARGES).values_list("quota_day").annotate(s=Sum("spent_delta")).order_by()
    )
    granted = entries.filter(kind=LedgerEntry.GRANT).aggregate(s=Sum("spent_delta"))["s"] or 0
    days = [
        start + dt.timedelta(days=i) for i in range(calendar.monthrange(start.year, start.month)[1])
    ]
    spent = sum(per_day.values())
    today = quota_day()
    is_current = start == month_start(today)
    projection = _pace(spent, start) if is_current else None
    return Month(
        start,
        spent,
        -granted,
        budget,
        chart([Bar(d, per_day.get(d, 0)) for d in days]),
        projection,
        is_current,
    )


def _entries(start: dt.date, *, user=None, team=None):
    owner = {"user": user} if user is not None else {"team": team}
    return LedgerEntry.objects.filter(
        quota_day__gte=start, quota_day__lt=next_month_start(start), **owner
    )


def ledger(start: dt.date, *, user=None, team=None):
    return _entries(start, user=user, team=team).select_related(
        "user", "actor", "generation__model", "generation__image"
    )


def members(team: Team, start: dt.date) -> list[tuple[User, int, int]]:
    """(member, charged this month, images made) for every member, biggest spender first."""
    rows = dict(
        (uid, (s or 0, n or 0))
        for uid, s, n in _entries(start, team=team)
        .filter(CHARGES)
        .values("user_id")
        .annotate(s=Sum("spent_delta"), n=Sum("images_used_delta"))
        .values_list("user_id", "s", "n")
        .order_by()
    )
    people = [(m, *rows.get(m.pk, (0, 0))) for m in team.members.order_by("email")]
    return sorted(people, key=lambda row: -row[1])


def team_counter(team: Team, start: dt.date) -> QuotaCounter | None:
    return QuotaCounter.objects.filter(
        team=team, period=QuotaCounter.MONTH, period_start=start
    ).first()


def nice_ceiling(micros: int) -> int:
    """The smallest 1, 2 or 5 × 10^k micro-USD at or above ``micros`` (at least one cent)."""
    step = 10_000
    while True:
        for factor in (1, 2, 5):
            if step * factor >= micros:
                return step * factor
        step *= 10


def chart(bars: list[Bar]) -> Chart:
    c = Chart(bars=bars, top=nice_ceiling(max([b.micros for b in bars] + [0])))
    slot = (c.width - c.left - 8) / max(1, len(bars))
    c.bar_width = round(slot * 0.7, 2)
    for i, bar in enumerate(bars):
        bar.height = round(max(0, bar.micros) / c.top * c.plot_height, 2)
        bar.x = round(c.left + i * slot + (slot - c.bar_width) / 2, 2)
        bar.y = round(c.axis_y - bar.height, 2)
        if i == 0 or (i + 1) % 5 == 0:
            c.labels.append((round(bar.x + c.bar_width / 2, 2), str(bar.day.day)))
    c.ticks = [(round(c.axis_y - k / 2 * c.plot_height, 2), c.top * k // 2) for k in range(3)]
    return c
