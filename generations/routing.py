"""Which route and key serve a job's next attempt.

Routes go in priority order, then the fallback model's routes (when the admin
allowed one and it fits the request and the reservation). A route that used up a
retry budget on this job, or refused it, goes only when nothing else can serve;
after a route failure the route that failed goes last. A route whose breaker is
open and a key at its rate limit are skipped; if that leaves nothing,
:class:`NotYet` says how long until something frees up (booking the soonest
rate-limit slot, so the job wakes exactly when it opens).

A route with a free tier (``Route.free_daily_images``) serves at most that many images
a day per key, free; a key past it is skipped, so the model's next route (its priced
fallback) serves. Its days end at midnight Pacific time, as Google's free-tier quotas
do (ai.google.dev/gemini-api/docs/rate-limits: "Requests per day (RPD) quotas reset at
midnight Pacific time"). Images are counted from the attempt log (calls that made an
image), so two jobs admitted at the same instant can both take the last free image;
the provider's own free-tier 429 then fails the second one over as usual.

Economy batches use :func:`batch_routes`: Gemini routes with a Batch price in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.conf import settings
from django.db.models import Count, F
from django.utils import timezone
from django.utils.translation import gettext as _

from generations import pricing, resilience
from generations.failures import OK, ErrorKind
from generations.models import Attempt, Generation, ModelSpec, Price, ProviderKey, Route
from generations.providers.base import Provider, Timeouts, provider_class
from generations.resilience import breaker, limiter
from generations.resilience.types import PACIFIC, Limits, Permit

# A model that answered without an image, or a call that timed out (and may have been
# billed), gets its retries once per job: another route runs the same model, so handing
# the job over would only repeat the answer or the bill. Other budgets are per route.
JOB_BUDGETS = frozenset({ErrorKind.NO_IMAGE, ErrorKind.SLOW})
ROUTE_BUDGETS = [kind for kind in resilience.RETRY_BUDGET if kind not in JOB_BUDGETS]


@dataclass(frozen=True)
class Choice:
    route: Route
    key: ProviderKey
    price: Price | None
    permit: Permit | None  # None for a poll: it makes no new call the limiter counts

    def connect(self, timeouts: Timeouts) -> Provider:
        """The provider client for this route and key (raises KeyDecryptionError when
        the stored key cannot be read)."""
        provider = self.route.provider
        return provider_class(provider.kind)(
            provider.base_url, self.key.get_key(), timeouts, options=provider.options
        )


class NoRoute(Exception):
    """Nothing can serve this job, now or later: it fails with ``kind``."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.NO_ROUTE) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class NotYet(Exception):
    """Something can serve this job, but not now: every open route is resting or
    every key is at its rate limit. The job waits without using up an attempt,
    holding the rate-limit slot it ``booked`` if there is one."""

    def __init__(self, seconds: float, stage: str, booked: Choice | None = None) -> None:
        super().__init__(stage)
        self.seconds = seconds
        self.stage = stage
        self.booked = booked


def next_choice(gen: Generation) -> Choice:
    """The slot booked when the job last waited, if still good, or a fresh choice."""
    return booked_choice(gen) or choose_route(gen)


def choose_route(gen: Generation) -> Choice:
    """The first route that can serve now, with a key that has a permit (see the module)."""
    routes = candidate_routes(gen)
    if gen.params and not gen.mask_id and not routes:
        raise NoRoute(
            _(
                "No provider for %(model)s takes thinking levels or Search grounding: they "
                "need a Gemini provider. An admin needs to add one."
            )
            % {"model": gen.model.name}
        )
    if gen.mask_id and not routes:
        raise NoRoute(
            _(
                "No provider for %(model)s takes an edit mask: masks need an OpenAI "
                "Images provider. An admin needs to add one."
            )
            % {"model": gen.model.name}
        )
    spent = spent_routes(gen)
    if spent:  # a route that used up its budget only when nothing else can serve
        routes = [r for r in routes if r.pk not in spent and servable(r)] or routes
    last = gen.attempt_log.order_by("-number").first() if tried_before(gen) else None
    if last and last.outcome in breaker.ROUTE_FAILURES:
        routes.sort(key=lambda r: r.pk == last.route_id)  # stable: the failed one goes last
    waits: list[tuple[float, str]] = []
    bookable: list[tuple] = []
    exhausted = free_used = False
    for route in routes:
        price = route.price_at()
        if not route.is_priced(price):
            continue
        keys = list(
            route.provider.keys.usable().order_by(F("last_used").asc(nulls_first=True), "id")
        )
        if route.has_free_tier:
            within = [key for key in keys if within_free_tier(route, key)]
            free_used = free_used or len(within) < len(keys)
            keys = within
            if not keys:
                continue
        if not keys:
            exhausted = exhausted or route.provider.keys.filter(enabled=True).exists()
            continue
        decision = breaker.allow(route.pk, gen.pk)
        if not decision.allowed:
            waits.append((decision.wait, "provider resting after errors"))
            continue
        limits = Limits.of(route.provider)
        for key in keys:
            if _upstream_full(route, key):  # a queue-style upstream's slots per key
                waits.append((settings.NANOWEB_POLL_MIN_SECONDS * 2, "waiting for the provider"))
                continue
            permit = limiter.acquire(key.pk, limits)
            if isinstance(permit, Permit):
                return Choice(route, key, price, permit)
            waits.append((permit.seconds, "waiting for rate limit"))
            if permit.reason == "rpm":
                bookable.append((permit.seconds, route.priority, key.pk, route, key, price))
    if bookable:  # book the soonest slot, so this job wakes exactly when it opens
        _wait, _priority, _key, route, key, price = min(bookable, key=lambda b: b[:3])
        permit = limiter.acquire(
            key.pk, Limits.of(route.provider), ahead=resilience.MAX_COUNTDOWN_SECONDS
        )
        if isinstance(permit, Permit):
            raise NotYet(
                permit.delay, "waiting for rate limit", booked=Choice(route, key, price, permit)
            )
    if waits:
        seconds, stage = min(waits)
        raise NotYet(seconds, stage)
    if exhausted or free_used:
        raise NoRoute(
            _(
                "Every provider key for %(model)s has used up its daily quota. Quotas "
                "reset at midnight Pacific time."
            )
            % {"model": gen.model.name}
            if exhausted
            else _(
                "The free images of %(model)s are used up for today and it has no priced "
                "route to continue on. They come back at midnight Pacific time."
            )
            % {"model": gen.model.name},
            ErrorKind.KEY_EXHAUSTED,
        )
    raise NoRoute(
        _(
            "No provider is available for %(model)s right now. An admin needs to add "
            "or enable a provider key."
        )
        % {"model": gen.model.name}
    )


def booked_choice(gen: Generation) -> Choice | None:
    """The route, key and slot booked when this job last waited, if still good."""
    slot = gen.booked_slot
    if not slot:
        return None
    Generation.objects.filter(pk=gen.pk).update(booked_slot=None)
    permit = Permit(slot["key"], slot["token"])
    route = (
        Route.objects.usable().filter(pk=slot["route"]).select_related("provider", "model").first()
    )
    key = ProviderKey.objects.usable().filter(pk=slot["key"]).first()
    price = route.price_at() if route else None
    if (
        route is None
        or key is None
        or not route.is_priced(price)
        or not breaker.allow(route.pk, gen.pk).allowed
    ):
        limiter.release(permit)
        return None
    return Choice(route, key, price, permit)


def candidate_routes(gen: Generation) -> list[Route]:
    def routes_of(model: ModelSpec) -> list[Route]:
        return list(Route.objects.usable().filter(model=model).select_related("provider", "model"))

    routes = routes_of(gen.model)
    if gen.mask_id:  # only OpenAI's edits API takes a mask: never fail over to other kinds
        return [r for r in routes if r.provider.kind == "openai"]
    if gen.params:  # thinking levels and Search grounding travel only in Gemini's protocol
        routes = [r for r in routes if r.provider.kind == "gemini"]
    fallback = gen.model.fallback
    if fallback and fallback.enabled and fallback.pk != gen.model_id and _fits(gen, fallback):
        routes += [r for r in routes_of(fallback) if _fallback_cost(gen, r) <= gen.reserved_micros]
    return routes


def _fits(gen: Generation, model: ModelSpec) -> bool:
    """Can ``model`` make what ``gen`` asks for, without silently changing it?"""
    if gen.aspect_ratio not in model.aspect_ratios:
        return False
    if gen.references.count() > model.max_reference_images:
        return False
    params = gen.params or {}
    if params.get("thinking_level") and params["thinking_level"] not in model.thinking_levels:
        return False
    if params.get("grounding") and not model.grounding:
        return False
    return not gen.image_size or not model.sizes or gen.image_size in model.sizes


def upstream_size(gen: Generation, route: Route) -> str | None:
    """The size to ask the route for: none when its model takes no size."""
    return (gen.image_size or None) if route.model.sizes else None


def _fallback_cost(gen: Generation, route: Route) -> int:
    price = route.price_at()
    if not route.is_priced(price):
        return gen.reserved_micros + 1  # never used
    size = upstream_size(gen, route)
    usage = pricing.worst_case_usage(
        prompt_chars=len(gen.prompt),
        references=gen.references.count(),
        image_tokens=route.model.image_tokens_for(size),
        text_tokens=route.model.estimate_text_tokens,
        grounded=bool((gen.params or {}).get("grounding")),
    )
    return pricing.route_cost(route, price, usage, size)


def tried_before(gen: Generation) -> bool:
    """Whether the job may have attempts logged. On its first attempt (the common case)
    none are (a postponed claim gives its attempt back, a crashed one counts), so the
    questions about earlier attempts need no query."""
    return gen.attempts > 1


def spent_routes(gen: Generation) -> set[int]:
    """Routes that have used up a retry budget (per error class) on this job."""
    if not tried_before(gen):
        return set()
    counts = (
        gen.attempt_log.filter(outcome__in=ROUTE_BUDGETS)
        .values("route", "outcome")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {
        row["route"]
        for row in counts
        if row["n"] > resilience.RETRY_BUDGET[ErrorKind(row["outcome"])]
    }


def in_flight_upstream(key: ProviderKey) -> int:
    """Requests this key has submitted to a queue-style upstream that have not finished."""
    return (
        Generation.objects.in_flight()
        .filter(upstream_job__isnull=False, upstream_job__key=key.pk)
        .count()
    )


def _upstream_full(route: Route, key: ProviderKey) -> bool:
    """For fal.ai and Replicate, max_concurrency counts the requests a key has waiting
    upstream (their accounts run 2-40 at once and queue or refuse the rest)."""
    limit = route.provider.max_concurrency
    return bool(route.provider.is_queued and limit and in_flight_upstream(key) >= limit)


def servable(route: Route) -> bool:
    """Could this route take a job at all: priced (or free), with a usable key (one
    within the free tier, for a route that has one)?"""
    if not route.is_priced(route.price_at()):
        return False
    keys = route.provider.keys.usable()
    if route.has_free_tier:
        return any(within_free_tier(route, key) for key in keys)
    return keys.exists()


def free_day_start(now=None) -> datetime:
    """When the free tier's day began: the last midnight Pacific time."""
    local = (now or timezone.now()).astimezone(PACIFIC)
    return datetime.combine(local.date(), time.min, tzinfo=PACIFIC)


def free_images_used(route: Route, key: ProviderKey, now=None) -> int:
    """Images this key made through ``route`` since the free tier's day began."""
    return Attempt.objects.filter(
        route=route, key_label=key.label, outcome=OK, started__gte=free_day_start(now)
    ).count()


def within_free_tier(route: Route, key: ProviderKey, now=None) -> bool:
    return free_images_used(route, key, now) < (route.free_daily_images or 0)


def batch_routes(model: ModelSpec) -> list[Route]:
    """The routes that can serve ``model``'s economy rows, in failover order: Gemini
    routes with a Batch price in force and a usable key."""
    routes = Route.objects.usable().filter(model=model, provider__kind="gemini")
    return [
        route
        for route in routes.select_related("provider", "model")
        if pricing.batch_price(route) is not None and route.provider.keys.usable().exists()
    ]
