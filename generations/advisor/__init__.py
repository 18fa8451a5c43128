"""The cost advisor: what a period cost, what the same images would have cost on each
configured channel, and what to change (see :mod:`generations.advisor.figures` for what
each figure is made of)."""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext as _

from accounts.models import Team
from generations.advisor.export import TABLES, TEAM_TABLES, for_team, to_csv
from generations.advisor.figures import (
    TEAM,
    Advice,
    Prices,
    Recommendation,
    alternatives_for,
    candidate_routes,
    channel_label,
    channel_of,
    economy_for,
    free_tiers,
    last_month,
    made,
    projections,
    reuse_for,
    route_reports,
    spend_by,
    totals,
    usage_of,
)
from generations.advisor.recommendations import recommend

__all__ = [
    "TABLES",
    "TEAM",
    "TEAM_TABLES",
    "Advice",
    "Recommendation",
    "advise",
    "for_team",
    "last_month",
    "to_csv",
    "usage_of",
]


def advise(start: dt.date, end: dt.date, *, team: Team | None = None) -> Advice:
    """Everything the advisor shows for quota days ``start``–``end`` (inclusive), for
    the whole instance or one team's jobs."""
    advice = Advice(start, end, team)
    items = made(start, end, team)
    totals(advice, start, end, team)
    advice.by_model = spend_by(items, lambda g: g.model.name)
    advice.by_route = spend_by(items, lambda g: str(g.route) if g.route else _("(route removed)"))
    advice.by_channel = spend_by(
        items, lambda g: channel_label(channel_of(g.route)) if g.route else _("(route removed)")
    )
    routes = candidate_routes(items)
    prices = Prices({r for rs in routes.values() for r in rs})
    advice.alternatives = alternatives_for(items, routes, prices)
    advice.economy = economy_for(items, prices)
    advice.reuse = reuse_for(items, team, start, end)
    advice.free_tiers = free_tiers(items, routes, prices)
    advice.routes = route_reports(start, end, team)
    advice.projections = projections(team)
    advice.recommendations = recommend(advice, items, routes, prices)
    return advice
