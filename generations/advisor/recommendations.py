"""What to change: each recommendation the period's figures support, with its numbers
and what it rests on (only when its trigger holds)."""

from __future__ import annotations

from collections import Counter

from django.utils.translation import gettext as _

from accounts.models import CENTS, format_left, format_usd
from generations.advisor.figures import (
    ADMIN,
    BUSY_SHARE,
    MIN_BUSY_CALLS,
    MIN_QUOTA_DAYS,
    MIN_SAVING_MICROS,
    MIN_SAVING_SHARE,
    TEAM,
    Advice,
    Alternative,
    Made,
    Prices,
    Recommendation,
    price_on,
)
from generations.models import Route

# --- recommendations -----------------------------------------------------------------


def recommend(advice: Advice, items, routes, prices: Prices) -> list[Recommendation]:
    """Each piece of advice the period's data supports, the largest saving first."""
    found = [
        *_second_key(advice, items, prices),
        *_cheaper_first(advice, routes),
        *_economy_advice(advice),
        *_paid_again(advice),
        *_over_budget(advice),
        *_busy(advice),
    ]
    return sorted(found, key=lambda r: -r.saving)


def _worth_it(saving: int, of: int) -> bool:
    return saving >= MIN_SAVING_MICROS and saving * 100 >= MIN_SAVING_SHARE * of


def about(micros: int) -> str:
    """A projected amount to the cent: "about $7.08 a month", not $7.081415."""
    return format_usd(micros, CENTS)


def _average(micros: int, images: int) -> int:
    return (micros + images // 2) // images if images else 0


def _second_key(advice: Advice, items: list[Made], prices: Prices) -> list[Recommendation]:
    found = []
    for report in advice.routes:
        if report.quota_days < MIN_QUOTA_DAYS:
            continue
        route = report.route
        moved = [
            i
            for i in items
            if i.generation.model_id == route.model_id
            and i.generation.route_id not in (None, route.pk)
            and any(start <= i.made_at < end for start, end in report.rest_windows)
        ]
        here = [(i, price_on(route, prices.at(route, i.made_at), i)) for i in moved]
        here = [(i, cost) for i, cost in here if cost is not None]
        if not here:
            continue
        images = sum(i.images for i, _c in here)
        charged = sum(i.charged for i, _c in here)
        on_route = sum(cost for _i, cost in here)
        other = Counter(str(i.generation.route.provider.name) for i, _c in here).most_common(1)
        numbers = {
            "days": report.quota_days,
            "period_days": advice.days,
            "provider": route.provider.name,
            "model": route.model.name,
            "time": f"{report.latest_quota_time.hour + 1:02d}:00",
            "images": images,
            "other": other[0][0],
            "other_average": format_usd(_average(charged, images)),
            "average": format_usd(_average(on_route, images)),
            "total": format_usd(on_route),
            "charged": format_usd(charged),
        }
        text = (
            _(
                "On %(days)s of the %(period_days)s days, a %(provider)s key for %(model)s met "
                "its daily quota before %(time)s (Pacific time), and %(images)s images "
                "were made through %(other)s instead, at %(other_average)s each (%(charged)s). "
                "A second %(provider)s key would have kept them there, at %(average)s each "
                "(%(total)s)."
            )
            % numbers
        )
        based_on = (
            _(
                "Calls answered “daily quota used up” (the key rests until Pacific midnight), "
                "the images other routes made while it rested, and their real token usage "
                "priced at %(provider)s's price."
            )
            % numbers
        )
        found.append(
            Recommendation(
                "second_key",
                ADMIN,
                text,
                based_on,
                {**numbers, "images": images, "charged_micros": charged, "cost_micros": on_route},
                saving=max(0, charged - on_route),
            )
        )
    return found


def _first_route(routes: list[Route]) -> Route | None:
    usable = [r for r in routes if r.enabled and r.provider.enabled and not r.provider.is_sandbox]
    return min(usable, key=lambda r: (r.priority, r.pk)) if usable else None


def _cheaper_first(advice: Advice, routes) -> list[Recommendation]:
    found = []
    first_of = {model_id: _first_route(rs) for model_id, rs in routes.items()}
    best: dict[str, Alternative] = {}
    for alt in advice.alternatives:
        first = first_of.get(alt.route.model_id)
        usable = alt.route.enabled and alt.route.provider.enabled
        if alt.batch or alt.channel == "sandbox" or not usable or first in (None, alt.route):
            continue
        saving = alt.actual - alt.cost
        if _worth_it(saving, alt.actual) and saving > (
            best[alt.model].actual - best[alt.model].cost if alt.model in best else 0
        ):
            best[alt.model] = alt
    for alt in best.values():
        saving = alt.actual - alt.cost
        numbers = {
            "route": alt.label,
            "model": alt.model,
            "first": first_of[alt.route.model_id].provider.name,
            "images": alt.images,
            "cost": format_usd(alt.cost),
            "actual": format_usd(alt.actual),
            "saving": format_usd(saving),
            "monthly": about(advice.per_month(saving)),
        }
        text = (
            _(
                "%(route)s would have made %(images)s of the %(model)s images for %(cost)s "
                "instead of the %(actual)s they cost: %(saving)s less, about %(monthly)s a "
                "month. Put it before %(first)s in the model's failover order."
            )
            % numbers
        )
        based_on = (
            _(
                "Each image's real token usage priced at %(route)s's price in force when it "
                "was made, against what the ledger charged for the same images."
            )
            % numbers
        )
        found.append(
            Recommendation(
                "cheaper_route_first",
                ADMIN,
                text,
                based_on,
                {**numbers, "saving_micros": saving},
                saving=saving,
            )
        )
    return found


def _economy_advice(advice: Advice) -> list[Recommendation]:
    found = []
    for row in advice.economy:
        if not row.eligible or not _worth_it(row.saving, row.actual):
            continue
        numbers = {
            "share": row.share,
            "model": row.model,
            "eligible": row.eligible,
            "images": row.images,
            "economy": format_usd(row.economy),
            "actual": format_usd(row.actual),
            "saving": format_usd(row.saving),
            "monthly": about(advice.per_month(row.saving)),
        }
        text = (
            _(
                "%(share)s %% of the %(model)s images (%(eligible)s of %(images)s) were made in "
                "batches: as economy batches (Google's Batch API, results within a day) they "
                "would have cost %(economy)s instead of %(actual)s — %(saving)s less, about "
                "%(monthly)s a month."
            )
            % numbers
        )
        based_on = _(
            "Images of batches started in the period, their real token usage priced at "
            "the route's Batch API price in force when it was made."
        )
        found.append(
            Recommendation(
                "economy",
                TEAM,
                text,
                based_on,
                {**numbers, "saving_micros": row.saving},
                saving=row.saving,
            )
        )
    return found


def _paid_again(advice: Advice) -> list[Recommendation]:
    reuse = advice.reuse
    if not reuse.paid_again_images:
        return []
    numbers = {
        "images": reuse.paid_again_images,
        "cost": format_usd(reuse.paid_again_micros),
        "minutes": reuse.window_seconds // 60,
    }
    text = (
        _(
            "%(images)s images repeated a request the same person had made in the %(minutes)s "
            "minutes before (same model, prompt, settings and references), and were paid for "
            "again: %(cost)s. The studio offers the earlier result at no cost: choosing it "
            "instead of “Generate again” keeps that money."
        )
        % numbers
    )
    based_on = _(
        "Images whose request fingerprint matches an image the same person made just "
        "before, and what the ledger charged for them."
    )
    return [
        Recommendation(
            "paid_again",
            TEAM,
            text,
            based_on,
            {**numbers, "cost_micros": reuse.paid_again_micros},
            saving=reuse.paid_again_micros,
        )
    ]


def _over_budget(advice: Advice) -> list[Recommendation]:
    found = []
    for row in advice.projections:
        if not row.over:
            continue
        numbers = {
            "owner": row.owner,
            "projected": about(row.projected),
            "month_end": f"{row.month_end:%B} {row.month_end.day}",
            "budget": format_left(row.budget),
            "spent": format_usd(row.spent),
        }
        text = (
            _(
                "At this pace %(owner)s will have spent about %(projected)s by %(month_end)s, "
                "more than the %(budget)s monthly budget (%(spent)s so far). Raise the budget, "
                "or expect new images to be refused once it is used up."
            )
            % numbers
        )
        based_on = _("What the ledger charged this month so far, scaled to the whole month.")
        found.append(
            Recommendation(
                "over_budget",
                TEAM,
                text,
                based_on,
                {**numbers, "projected_micros": row.projected, "budget_micros": row.budget},
            )
        )
    return found


def _busy(advice: Advice) -> list[Recommendation]:
    found = []
    for report in advice.routes:
        if report.calls < MIN_BUSY_CALLS or report.busy_share < BUSY_SHARE:
            continue
        numbers = {"share": report.busy_share, "calls": report.calls, "route": report.label}
        text = (
            _(
                "%(share)s %% of the %(calls)s calls to %(route)s were refused as busy (HTTP "
                "429). Set the provider's requests per minute to its real limit, so calls wait "
                "their turn here instead of being refused, or add a key."
            )
            % numbers
        )
        based_on = _("The HTTP status of every call made for the period's images.")
        found.append(Recommendation("busy", ADMIN, text, based_on, numbers))
    return found
