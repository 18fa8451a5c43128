"""The cost advisor: what a period cost, what the same images would have cost on each
configured channel, and what to change — with the numbers each advice rests on.

Pure functions over querysets; every amount is integer micro-USD.

* **Spend** is the ledger's, cut as :mod:`accounts.billing` cuts it: ``settle`` rows
  whose quota day falls in the range are the charges (per model, route and channel),
  ``adjust`` and ``grant`` rows the corrections. The net therefore equals the billing
  report over the same days, to the micro-dollar.
* **Would have cost** prices each image's real usage (``Generation.usage``, the token
  counts its upstream reported) on another route with :func:`pricing.route_cost`, at
  that route's price in force when the image was made. An image a route cannot price
  (a per-image price without the image's size, per-token rates for an image whose
  upstream reported no tokens) is left out of that route's figure, and the table says
  for how many images each figure stands.
* **Route health** comes from the Attempt rows of the period's jobs; a key "rests" from
  the call that met its daily quota until the next Pacific midnight (as the engine
  rests it, :func:`generations.outcomes._penalise_key`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import billing, limits, usage
from accounts.models import LedgerEntry, Team, User
from accounts.periods import month_start, next_month_start, quota_day, quota_zone
from generations import pricing
from generations.failures import OK, ErrorKind, explain
from generations.models import Attempt, DuplicateOffer, Generation, Price, Route
from generations.providers.base import Usage
from generations.resilience.types import PACIFIC

# What makes advice worth giving (tunables; a figure below them is shown, not advised on).
MIN_QUOTA_DAYS = 2  # days a key met its daily quota before a second key is advised
MIN_SAVING_MICROS = 1_000_000  # $1 over the period: smaller savings are not worth a change
MIN_SAVING_SHARE = 5  # … and at least 5 % of what the images cost
MIN_BUSY_CALLS = 20  # calls to a route before its 429 share means anything
BUSY_SHARE = 20  # % of calls refused as busy (429) that is worth acting on
MONTH_DAYS = 30  # "a month" when a saving over the period is scaled to one
GOOGLE_HOSTS = ("generativelanguage.googleapis.com", "aiplatform.googleapis.com")

CHANNELS = {
    "google": gettext_lazy("Google (interactive)"),
    "batch": gettext_lazy("Google Batch"),
    "relay": gettext_lazy("Relay"),
    "openai": gettext_lazy("OpenAI"),
    "fal": gettext_lazy("fal.ai"),
    "replicate": gettext_lazy("Replicate"),
    "sandbox": gettext_lazy("Sandbox (offline)"),
}
ADMIN, TEAM = "admin", "team"  # who can act on a recommendation


def channel_of(route: Route) -> str:
    """The kind of channel a route is: Google's own API, a relay, fal.ai, Replicate …"""
    provider = route.provider
    host = (urlsplit(provider.base_url).hostname or "").lower()
    if provider.is_sandbox:
        return "sandbox"
    if provider.kind == "gemini":
        return "google" if host in GOOGLE_HOSTS else "relay"
    if provider.kind == "openai":
        return "openai" if host == "api.openai.com" else "relay"
    return "relay" if provider.kind == "openai_chat" else provider.kind


def channel_label(code: str) -> str:
    return str(CHANNELS.get(code, code))


# --- what was made -------------------------------------------------------------------


@dataclass
class Made:
    """One settled job: what the ledger charged for it and what its upstream used."""

    generation: Generation
    charged: int
    images: int
    use: Usage

    @property
    def made_at(self) -> dt.datetime:
        return self.generation.finished or self.generation.created


def usage_of(generation: Generation) -> Usage:
    names = {f.name for f in fields(Usage)}
    return Usage(**{k: int(v or 0) for k, v in (generation.usage or {}).items() if k in names})


def _ledger(start: dt.date, end: dt.date, team: Team | None):
    rows = billing.entries(start, end)
    return rows.filter(team=team) if team is not None else rows


def made(start: dt.date, end: dt.date, team: Team | None = None) -> list[Made]:
    settles = (
        _ledger(start, end, team)
        .filter(kind=LedgerEntry.SETTLE)
        .select_related("generation__model", "generation__route__provider", "generation__batch")
        .order_by("created", "id")
    )
    return [
        Made(e.generation, e.spent_delta, e.images_used_delta, usage_of(e.generation))
        for e in settles
        if e.generation_id
    ]


class Prices:
    """Every route's price rows (standard and Batch), loaded once; the price in force
    at a moment, as :meth:`Route.price_at` and :func:`pricing.batch_price` read it."""

    def __init__(self, routes) -> None:
        self.rows: dict[tuple[int, str], list[Price]] = defaultdict(list)
        for price in Price.objects.filter(route__in=list(routes)).order_by("effective_from"):
            self.rows[(price.route_id, price.kind)].append(price)

    def has_batch(self, route: Route) -> bool:
        """The route can serve economy batches (it has a Batch API price)."""
        return bool(self.rows.get((route.pk, Price.BATCH)))

    def at(self, route: Route, when: dt.datetime, kind: str = Price.STANDARD) -> Price | None:
        """The price in force at ``when``; a route priced only later (added since) is
        taken at its first price, so it can still be compared."""
        rows = self.rows.get((route.pk, kind), [])
        earlier = [p for p in rows if p.effective_from <= when]
        return earlier[-1] if earlier else (rows[0] if rows else None)


def price_on(route: Route, price: Price | None, item: Made, *, batch: bool = False) -> int | None:
    """What ``item`` would have cost through ``route`` (None: the route cannot say)."""
    if route.is_free:
        return 0
    if price is None:
        return None
    size = item.generation.image_size or None
    if price.per_image:
        if (size or "default") not in price.per_image:
            return None
    elif not (item.use.output_image_tokens or item.use.input_tokens):
        return None  # no token counts to price per token (a per-image upstream made it)
    return pricing.route_cost(route, price, item.use, size) * item.images


# --- the tables ----------------------------------------------------------------------


@dataclass
class Spend:
    label: str
    images: int = 0
    charged: int = 0

    @property
    def average(self) -> int | None:
        return (self.charged + self.images // 2) // self.images if self.images else None


@dataclass
class Alternative:
    """The images of one model, priced on one channel (a route, or its Batch)."""

    model: str
    channel: str
    route: Route
    batch: bool = False
    images: int = 0  # images it could price
    of_images: int = 0  # images of the model in all
    actual: int = 0  # what those same images were charged
    cost: int = 0  # what they would have cost here

    @property
    def difference(self) -> int:
        return self.cost - self.actual

    @property
    def average(self) -> int | None:
        return (self.cost + self.images // 2) // self.images if self.images else None

    @property
    def label(self) -> str:
        return f"{channel_label(self.channel)} · {self.route.provider.name}"


@dataclass
class Economy:
    model: str
    images: int = 0  # images of the model
    eligible: int = 0  # made in batches that could have waited
    actual: int = 0  # what the eligible ones were charged
    economy: int = 0  # what they would have cost at the Batch price

    @property
    def share(self) -> int:
        return round(self.eligible * 100 / self.images) if self.images else 0

    @property
    def saving(self) -> int:
        return self.actual - self.economy


@dataclass
class Reuse:
    paid_again_images: int = 0  # identical to an earlier image of the same person
    paid_again_micros: int = 0
    window_seconds: int = 0
    # The studio's "use the earlier result — free" offer (DuplicateOffer rows): how often
    # it was shown, how often taken (not followed by "Generate again"), what that saved.
    offers_shown: int = 0
    offers_taken: int = 0
    offers_saved_micros: int = 0


@dataclass
class FreeTier:
    """Images a route's free daily allowance made, and what the model's next priced
    route (the one that serves once the allowance is used) would have charged."""

    route: Route
    priced_by: Route | None
    images: int = 0
    saved: int = 0
    priced: int = 0  # of the images, how many the priced route could price


@dataclass
class RouteReport:
    route: Route
    calls: int = 0
    busy: int = 0  # answered 429
    quota_days: int = 0  # days a key met its daily quota
    resting_hours: float = 0.0  # hours keys rested for their daily quota
    latest_quota_time: dt.time | None = None  # latest first-quota time of day (Pacific)
    p50_ms: int | None = None
    p95_ms: int | None = None
    failures: Counter = field(default_factory=Counter)
    rest_windows: list[tuple[dt.datetime, dt.datetime]] = field(default_factory=list)

    @property
    def busy_share(self) -> int:
        return round(self.busy * 100 / self.calls) if self.calls else 0

    @property
    def failure_mix(self) -> list[tuple[str, int]]:
        return [(str(explain(kind).title), n) for kind, n in self.failures.most_common()]

    @property
    def label(self) -> str:
        return f"{self.route.model.name} → {self.route.provider.name}"


@dataclass
class Projection:
    owner: str
    spent: int
    projected: int | None
    budget: int | None
    month_end: dt.date

    @property
    def over(self) -> bool:
        return None not in (self.projected, self.budget) and self.projected > self.budget


@dataclass
class Recommendation:
    code: str
    audience: str  # ADMIN or TEAM: who can act on it
    text: str
    based_on: str
    numbers: dict = field(default_factory=dict)
    saving: int = 0  # over the period, for ordering


@dataclass
class Advice:
    start: dt.date
    end: dt.date
    team: Team | None
    charged: int = 0
    adjusted: int = 0
    granted: int = 0
    images: int = 0
    by_model: list[Spend] = field(default_factory=list)
    by_route: list[Spend] = field(default_factory=list)
    by_channel: list[Spend] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    economy: list[Economy] = field(default_factory=list)
    reuse: Reuse = field(default_factory=Reuse)
    free_tiers: list[FreeTier] = field(default_factory=list)
    routes: list[RouteReport] = field(default_factory=list)
    projections: list[Projection] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)

    @property
    def net(self) -> int:
        return self.charged + self.adjusted + self.granted

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def per_month(self, micros: int) -> int:
        return round(micros * MONTH_DAYS / self.days)


def last_month(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The default period: the whole of last month (quota days)."""
    first = month_start(today or quota_day())
    end = first - dt.timedelta(days=1)
    return month_start(end), end


def totals(advice: Advice, start, end, team) -> None:
    for entry in _ledger(start, end, team).exclude(kind__in=[LedgerEntry.RESERVE]):
        if entry.kind == LedgerEntry.SETTLE:
            advice.charged += entry.spent_delta
            advice.images += entry.images_used_delta
        elif entry.kind == LedgerEntry.ADJUST:
            advice.adjusted += entry.spent_delta
        elif entry.kind == LedgerEntry.GRANT:
            advice.granted += entry.spent_delta


def spend_by(items: list[Made], label) -> list[Spend]:
    lines: dict[str, Spend] = {}
    for item in items:
        line = lines.setdefault(label(item.generation), Spend(label(item.generation)))
        line.images += item.images
        line.charged += item.charged
    return sorted(lines.values(), key=lambda s: (-s.charged, s.label))


def candidate_routes(items: list[Made]) -> dict[int, list[Route]]:
    """Model id → the routes its images could have taken: the usable routes (in failover
    order) and any route that made one of them."""
    model_ids = {i.generation.model_id for i in items}
    routes: dict[int, list[Route]] = defaultdict(list)
    usable = Route.objects.usable().filter(model_id__in=model_ids).select_related("provider")
    for route in usable.select_related("model"):
        routes[route.model_id].append(route)
    for item in items:
        route = item.generation.route
        if route is not None and route not in routes[route.model_id]:
            routes[route.model_id].append(route)
    return routes


def alternatives_for(items, routes, prices: Prices) -> list[Alternative]:
    rows: dict[tuple, Alternative] = {}
    totals = Counter(i.generation.model_id for i in items for _n in range(i.images))
    for item in items:
        gen = item.generation
        for route in routes[gen.model_id]:
            if channel_of(route) == "sandbox" and not (gen.route and gen.route.pk == route.pk):
                continue  # the test double is never offered as a way to save
            for batch in (False, True) if prices.has_batch(route) else (False,):
                key = (gen.model_id, route.pk, batch)
                row = rows.get(key) or rows.setdefault(
                    key,
                    Alternative(
                        gen.model.name,
                        "batch" if batch else channel_of(route),
                        route,
                        batch,
                        of_images=totals[gen.model_id],
                    ),
                )
                kind = Price.BATCH if batch else Price.STANDARD
                cost = price_on(route, prices.at(route, item.made_at, kind), item)
                if cost is not None:
                    row.images += item.images
                    row.actual += item.charged
                    row.cost += cost
    return sorted(rows.values(), key=lambda a: (a.model, a.cost if a.images else 1 << 62))


def economy_for(items: list[Made], prices: Prices) -> list[Economy]:
    rows: dict[str, Economy] = {}
    for item in items:
        gen = item.generation
        row = rows.setdefault(gen.model.name, Economy(gen.model.name))
        row.images += item.images
        if gen.batch is None or gen.batch.economy or gen.route is None:
            continue  # not in a batch, or already economy (at the Batch price)
        if not prices.has_batch(gen.route):
            continue
        cost = price_on(gen.route, prices.at(gen.route, item.made_at, Price.BATCH), item)
        if cost is not None:
            row.eligible += item.images
            row.actual += item.charged
            row.economy += cost
    return sorted((r for r in rows.values() if r.images), key=lambda r: -r.saving)


def reuse_for(items: list[Made], team: Team | None, start: dt.date, end: dt.date) -> Reuse:
    """The studio's duplicate offers of the period (shown, taken, saved), and images paid
    for although the same person had made the identical request (same fingerprint)
    within the studio's duplicate window just before."""
    window = settings.NANOWEB_DUPLICATE_WINDOW_SECONDS
    reuse = Reuse(window_seconds=window)
    zone = quota_zone()
    offers = DuplicateOffer.objects.filter(
        created__gte=dt.datetime.combine(start, dt.time.min, tzinfo=zone),
        created__lt=dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=zone),
    )
    if team is not None:
        offers = offers.filter(team=team)
    for declined, saved in offers.values_list("declined", "saved_micros"):
        reuse.offers_shown += 1
        if not declined:
            reuse.offers_taken += 1
            reuse.offers_saved_micros += saved
    if not window or not items:
        return reuse
    first = min(i.generation.created for i in items) - dt.timedelta(seconds=window)
    earlier = Generation.objects.filter(
        status=Generation.SUCCEEDED, created__gte=first, fingerprint__gt=""
    )
    if team is not None:
        earlier = earlier.filter(team=team)
    seen: dict[tuple, list[tuple[dt.datetime, object]]] = defaultdict(list)
    for user_id, print_, created, request_id in earlier.values_list(
        "user_id", "fingerprint", "created", "request_id"
    ):
        seen[(user_id, print_)].append((created, request_id))
    span = dt.timedelta(seconds=window)
    for item in items:
        gen = item.generation
        if not gen.fingerprint:
            continue
        before = seen[(gen.user_id, gen.fingerprint)]
        if any(
            gen.created - span <= created < gen.created and request_id != gen.request_id
            for created, request_id in before
        ):
            reuse.paid_again_images += item.images
            reuse.paid_again_micros += item.charged
    return reuse


def free_tiers(items: list[Made], routes, prices: Prices) -> list[FreeTier]:
    """What each free tier (``Route.free_daily_images``) saved over the period."""
    found: dict[int, FreeTier] = {}
    for item in items:
        route = item.generation.route
        if route is None or not route.has_free_tier or item.charged:
            continue
        if route.pk not in found:
            fallback = next(
                (
                    r
                    for r in sorted(routes[route.model_id], key=lambda r: r.priority)
                    if r.pk != route.pk and not r.bills_nothing
                ),
                None,
            )
            found[route.pk] = FreeTier(route, fallback)
        tier = found[route.pk]
        tier.images += item.images
        if tier.priced_by is not None:
            cost = price_on(tier.priced_by, prices.at(tier.priced_by, item.made_at), item)
            if cost is not None:
                tier.saved += cost
                tier.priced += item.images
    return sorted(found.values(), key=lambda t: -t.saved)


def percentile(values: list[int], pct: int) -> int | None:
    """Nearest-rank percentile of ``values`` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[rank - 1]


def route_reports(start, end, team) -> list[RouteReport]:
    attempts = Attempt.objects.filter(
        generation__quota_day__gte=start, generation__quota_day__lte=end, route__isnull=False
    ).select_related("route__model", "route__provider")
    if team is not None:
        attempts = attempts.filter(generation__team=team)
    reports: dict[int, RouteReport] = {}
    latencies: dict[int, list[int]] = defaultdict(list)
    first_quota: dict[tuple, dt.datetime] = {}
    for a in attempts.order_by("started"):
        report = reports.setdefault(a.route_id, RouteReport(a.route))
        report.calls += 1
        report.busy += a.http_status == 429
        if a.outcome == OK:
            latencies[a.route_id].append(a.latency_ms)
        else:
            report.failures[a.outcome] += 1
        if a.outcome == ErrorKind.KEY_EXHAUSTED:
            first_quota.setdefault(
                (a.route_id, a.key_label, a.started.astimezone(PACIFIC).date()), a.started
            )
    for (route_id, _key, day), when in first_quota.items():
        _add_rest(reports[route_id], day, when)
    for route_id, report in reports.items():
        report.p50_ms = percentile(latencies[route_id], 50)
        report.p95_ms = percentile(latencies[route_id], 95)
    return sorted(reports.values(), key=lambda r: (r.route.model.name, r.route.priority))


def _add_rest(report: RouteReport, day: dt.date, when: dt.datetime) -> None:
    midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time.min, tzinfo=PACIFIC)
    report.rest_windows.append((when, midnight))
    report.resting_hours += (midnight - when).total_seconds() / 3600
    report.quota_days = len({start.astimezone(PACIFIC).date() for start, _e in report.rest_windows})
    local = when.astimezone(PACIFIC).time()
    if report.latest_quota_time is None or local > report.latest_quota_time:
        report.latest_quota_time = local


def projections(team: Team | None = None, today: dt.date | None = None) -> list[Projection]:
    """This month's spend so far and at this pace by its last day, against each budget:
    the team's shared budget and each person's monthly budget (for one team, its
    members), for everyone who spent something this month or has a budget."""
    start = month_start(today or quota_day())
    rows = []
    teams = [team] if team is not None else Team.objects.order_by("name")
    for t in teams:
        month = usage.month(start, team=t, budget=t.shared_monthly_budget_micros)
        if month.spent or month.budget is not None:
            rows.append(_projection(_("Team %(team)s (shared)") % {"team": t.name}, month))
    people = team.members.all() if team is not None else User.objects.filter(is_active=True)
    # Only people with charges this month get a row: ask for them in one query rather
    # than each person's month in turn.
    spenders = (
        LedgerEntry.objects.filter(
            usage.CHARGES,
            quota_day__gte=start,
            quota_day__lt=next_month_start(start),
            user__isnull=False,
        )
        .values("user")
        .annotate(spent=Sum("spent_delta"))
        .exclude(spent=0)
        .values_list("user", flat=True)
    )
    for person in people.filter(pk__in=spenders).select_related("team").order_by("email"):
        month = usage.month(start, user=person, budget=limits.for_user(person).monthly_budget)
        if month.spent:
            rows.append(_projection(person.email, month))
    return rows


def _projection(owner: str, month) -> Projection:
    return Projection(owner, month.spent, month.projection, month.budget, month.end)
