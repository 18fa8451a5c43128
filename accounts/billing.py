"""The billing report: spend from the ledger, grouped so finance can read it.

Every figure is a sum of ``LedgerEntry`` rows whose quota day falls in the range, so
the report's total equals the ledger to the micro-dollar. Three columns explain the
net: **charged** (what jobs cost, from ``settle`` rows), **adjusted** (corrections by
an admin, ``adjust``) and **granted** (extra room given by an admin, ``grant`` —
recorded as negative spending, so it lowers the net). Reservations and releases
never change spending; they only hold room while a job runs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass, field

from django.db.models import F, Q, Sum, Value
from django.db.models.functions import Coalesce, TruncDay, TruncMonth
from django.utils.translation import gettext, ngettext, pgettext
from django.utils.translation import gettext_lazy as _

from accounts.models import CSV_BOM, LedgerEntry, csv_text, csv_usd, format_usd

# Labels are in the language of whoever reads the report (or downloads the CSV); the
# CSV's column names are fixed keys, the same in every language.
GROUPS = {
    "user": ("user__email", _("(nobody)")),
    "team": ("team__name", _("(no team)")),
    "model": ("generation__model__name", _("(grants and adjustments)")),
}
GROUP_LABELS = {"user": _("Person"), "team": _("Team"), "model": _("Model")}
CSV_GROUP_COLUMN = {"user": "person", "team": "team", "model": "model"}
NO_TEAM_NOTE = _("Grants and adjustments are made to a person, so they count under “(no team)”.")


@dataclass
class Line:
    label: str
    period: dt.date | None
    images: int = 0  # images made (settled jobs)
    charged: int = 0
    adjusted: int = 0
    granted: int = 0

    @property
    def net(self) -> int:
        return self.charged + self.adjusted + self.granted

    @property
    def average(self) -> int | None:
        """Average charge per image made, in micro-USD (rounded to the nearest)."""
        return (self.charged + self.images // 2) // self.images if self.images else None

    def add(self, other: Line) -> None:
        for name in ("images", "charged", "adjusted", "granted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Report:
    start: dt.date
    end: dt.date
    group: str
    period: str
    lines: list[Line] = field(default_factory=list)
    total: Line = field(default_factory=lambda: Line("Total", None))

    @property
    def group_label(self) -> str:
        return str(GROUP_LABELS[self.group])


def _sum_spent(kind: str) -> Coalesce:
    return Coalesce(Sum("spent_delta", filter=Q(kind=kind)), Value(0))


def entries(start: dt.date, end: dt.date):
    return LedgerEntry.objects.filter(quota_day__gte=start, quota_day__lte=end)


def build(start: dt.date, end: dt.date, *, group: str = "user", period: str = "month") -> Report:
    """Spend per ``group`` (user, team, model) and ``period`` (day, month), inclusive range."""
    if group not in GROUPS or period not in ("day", "month"):
        raise ValueError(f"unknown grouping {group!r}/{period!r}")
    column, missing = GROUPS[group]
    trunc = TruncMonth if period == "month" else TruncDay
    spending = entries(start, end).filter(
        kind__in=[LedgerEntry.SETTLE, LedgerEntry.ADJUST, LedgerEntry.GRANT]
    )
    rows = (
        spending.annotate(bucket=trunc("quota_day"), label=F(column))
        .values("label", "bucket")
        .annotate(
            images=Coalesce(Sum("images_used_delta", filter=Q(kind=LedgerEntry.SETTLE)), Value(0)),
            charged=_sum_spent(LedgerEntry.SETTLE),
            adjusted=_sum_spent(LedgerEntry.ADJUST),
            granted=_sum_spent(LedgerEntry.GRANT),
        )
        .order_by("bucket", "label")
    )
    report = Report(start, end, group, period)
    for row in rows:
        bucket = row["bucket"]
        line = Line(
            label=row["label"] or str(missing),
            period=bucket.date() if isinstance(bucket, dt.datetime) else bucket,
            images=row["images"],
            charged=row["charged"],
            adjusted=row["adjusted"],
            granted=row["granted"],
        )
        report.lines.append(line)
        report.total.add(line)
    return report


def ledger_net(start: dt.date, end: dt.date) -> int:
    """The plain sum of spending in the ledger over the range: the report's check figure."""
    return entries(start, end).aggregate(s=Coalesce(Sum("spent_delta"), Value(0)))["s"]


CSV_HEADER = [
    "period",
    "group",
    "images",
    "charged_usd",
    "adjusted_usd",
    "granted_usd",
    "net_usd",
    "average_per_image_usd",
]


def to_csv(report: Report) -> str:
    out = io.StringIO()
    out.write(CSV_BOM)
    writer = csv.writer(out)
    writer.writerow([*CSV_HEADER[:1], CSV_GROUP_COLUMN[report.group], *CSV_HEADER[2:]])
    fmt = "%Y-%m" if report.period == "month" else "%Y-%m-%d"
    for line in [*report.lines, report.total]:
        writer.writerow(
            [
                line.period.strftime(fmt) if line.period else "total",
                csv_text(line.label),
                line.images,
                csv_usd(line.charged),
                csv_usd(line.adjusted),
                csv_usd(line.granted),
                csv_usd(line.net),
                csv_usd(line.average),
            ]
        )
    return out.getvalue()


def describe(line: Line) -> str:
    """One sentence for a tooltip: how the net was reached."""
    parts = [
        ngettext(
            "%(amount)s charged for %(n)s image", "%(amount)s charged for %(n)s images", line.images
        )
        % {"amount": format_usd(line.charged), "n": line.images}
    ]
    if line.adjusted:
        parts.append(gettext("%(amount)s adjusted") % {"amount": format_usd(line.adjusted)})
    if line.granted:
        parts.append(gettext("%(amount)s granted") % {"amount": format_usd(-line.granted)})
    return pgettext("list separator", ", ").join(parts)
