"""The advisor's tables as CSV (free text guarded against spreadsheet formulas)."""

from __future__ import annotations

import csv
import io

from accounts.models import CSV_BOM, csv_text, csv_usd
from generations.advisor.figures import (
    TEAM,
    Advice,
    Recommendation,
    Spend,
)

# --- CSV -----------------------------------------------------------------------------


def _spend_rows(lines: list[Spend]):
    yield ["label", "images", "charged_usd", "average_per_image_usd"]
    for s in lines:
        yield [csv_text(s.label), s.images, csv_usd(s.charged), csv_usd(s.average)]


def _alternative_rows(advice: Advice):
    yield ["model", "channel", "images_priced", "images_of_model", "charged_usd",
           "would_cost_usd", "difference_usd", "average_per_image_usd"]  # fmt: skip
    for a in advice.alternatives:
        yield [
            csv_text(a.model), csv_text(a.label), a.images, a.of_images, csv_usd(a.actual),
            csv_usd(a.cost), csv_usd(a.difference), csv_usd(a.average),
        ]  # fmt: skip


def _economy_rows(advice: Advice):
    yield ["model", "images", "in_batches", "share_percent", "charged_usd", "economy_usd",
           "saving_usd"]  # fmt: skip
    for e in advice.economy:
        yield [
            csv_text(e.model), e.images, e.eligible, e.share, csv_usd(e.actual),
            csv_usd(e.economy), csv_usd(e.saving),
        ]  # fmt: skip


def _route_rows(advice: Advice):
    yield ["route", "calls", "busy_429", "busy_percent", "quota_days", "resting_hours",
           "p50_ms", "p95_ms", "failures"]  # fmt: skip
    for r in advice.routes:
        mix = "; ".join(f"{title}: {n}" for title, n in r.failure_mix)
        yield [
            csv_text(r.label), r.calls, r.busy, r.busy_share, r.quota_days,
            f"{r.resting_hours:.1f}", r.p50_ms or "", r.p95_ms or "", csv_text(mix),
        ]  # fmt: skip


def _projection_rows(advice: Advice):
    yield ["owner", "spent_usd", "projected_usd", "budget_usd", "over_budget"]
    for p in advice.projections:
        yield [csv_text(p.owner), csv_usd(p.spent), csv_usd(p.projected), csv_usd(p.budget),
               "yes" if p.over else "no"]  # fmt: skip


def _reuse_rows(advice: Advice):
    yield [
        "offers_shown",
        "offers_taken",
        "offers_saved_usd",
        "paid_again_images",
        "paid_again_usd",
        "window_seconds",
    ]
    r = advice.reuse
    yield [
        r.offers_shown,
        r.offers_taken,
        csv_usd(r.offers_saved_micros),
        r.paid_again_images,
        csv_usd(r.paid_again_micros),
        r.window_seconds,
    ]


def _free_tier_rows(advice: Advice):
    yield ["route", "free_images", "priced_by", "priced_images", "saved_usd"]
    for t in advice.free_tiers:
        yield [csv_text(t.route), t.images, csv_text(t.priced_by or ""), t.priced, csv_usd(t.saved)]


def _recommendation_rows(advice: Advice):
    yield ["advice", "for", "recommendation", "based_on", "saving_usd"]
    for r in advice.recommendations:
        yield [r.code, r.audience, csv_text(r.text), csv_text(r.based_on), csv_usd(r.saving)]


TABLES = {
    "models": lambda a: _spend_rows(a.by_model),
    "routes": lambda a: _spend_rows(a.by_route),
    "channels": lambda a: _spend_rows(a.by_channel),
    "alternatives": _alternative_rows,
    "economy": _economy_rows,
    "reuse": _reuse_rows,
    "free_tiers": _free_tier_rows,
    "health": _route_rows,
    "projections": _projection_rows,
    "recommendations": _recommendation_rows,
}
TEAM_TABLES = ("models", "channels", "alternatives", "economy", "reuse", "projections",
               "recommendations")  # fmt: skip


def to_csv(advice: Advice, table: str) -> str:
    """One of :data:`TABLES` as CSV (free text guarded against formulas)."""
    out = io.StringIO()
    out.write(CSV_BOM)
    writer = csv.writer(out)
    for row in TABLES[table](advice):
        writer.writerow(row)
    return out.getvalue()


def for_team(advice: Advice) -> list[Recommendation]:
    """The recommendations a team admin can act on."""
    return [r for r in advice.recommendations if r.audience == TEAM]
