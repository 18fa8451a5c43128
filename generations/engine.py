"""One attempt of one job: claim → pick route → call → classify → settle, retry or fail.

The database is the source of truth: a job is claimed with a conditional UPDATE
and a lease, and every later write is fenced on (status=running, attempts=n), so
a job whose lease expired and was taken over can never be finished twice. No
network call happens inside a transaction.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts import quotas
from accounts.models import format_usd
from accounts.periods import next_midnight
from generations import images, pricing, resilience
from generations.crypto import KeyDecryptionError
from generations.models import Attempt, Generation, Image, ModelSpec, Price, ProviderKey, Route
from generations.providers.base import (
    ErrorKind,
    ImageRequest,
    ImageResult,
    ProviderError,
    Reference,
    Timeouts,
    provider_class,
)
from generations.resilience import breaker, limiter
from generations.resilience.store import get_store

log = logging.getLogger(__name__)

# A failure on our side (not an upstream error class): the image could not be stored.
NOT_SAVED = "not_saved"
SAVE_RETRIES = 2
PACIFIC = limiter.PACIFIC  # Google's per-day quotas reset at Pacific midnight
SLOW_TIMEOUT_GROWTH = 0.5  # each earlier "slow" attempt gives the next one 50 % more time


@dataclass(frozen=True)
class Choice:
    route: Route
    key: ProviderKey
    price: Price | None
    permit: limiter.Permit


class NoRoute(Exception):
    """Nothing can serve this job, now or later: it fails."""


class NotYet(Exception):
    """Something can serve this job, but not now: every open route is resting or
    every key is at its rate limit. The job waits without using up an attempt,
    holding the rate-limit slot it ``booked`` if there is one."""

    def __init__(self, seconds: float, stage: str, booked: Choice | None = None) -> None:
        super().__init__(stage)
        self.seconds = seconds
        self.stage = stage
        self.booked = booked


def run_generation(generation_id) -> float | None:
    """Run one attempt. Returns seconds until the next attempt, or None when done."""
    gen = claim(generation_id)
    if gen is None:
        return None
    if gen.attempts > settings.NANOWEB_JOB_MAX_ATTEMPTS or timezone.now() > gen.deadline:
        fail(
            gen,
            ErrorKind.TRANSIENT,
            "No image could be made after several attempts; the provider kept failing.",
        )
        return None
    try:
        choice = _booked_choice(gen) or choose_route(gen)
    except NoRoute as exc:
        fail(gen, ErrorKind.PERMANENT, str(exc))
        return None
    except NotYet as wait:
        return _postpone(gen, wait)
    try:
        return _attempt(gen, choice)
    finally:
        limiter.release(choice.permit)


def claim(generation_id) -> Generation | None:
    now = timezone.now()
    claimable = Q(status=Generation.QUEUED, next_attempt_at__lte=now) | Q(
        status=Generation.RUNNING, lease_until__lt=now
    )
    claimed = Generation.objects.filter(claimable, pk=generation_id).update(
        status=Generation.RUNNING,
        stage="generating",
        attempts=F("attempts") + 1,
        lease_until=now + timedelta(seconds=settings.NANOWEB_JOB_LEASE_SECONDS),
        started=Coalesce("started", Value(now)),
    )
    if not claimed:
        return None
    return Generation.objects.select_related("model", "user").get(pk=generation_id)


def _fenced(gen: Generation):
    return Generation.objects.filter(pk=gen.pk, status=Generation.RUNNING, attempts=gen.attempts)


def choose_route(gen: Generation) -> Choice:
    """The first route that can serve now, with a key that has a permit.

    Routes go in priority order, then the fallback model's routes (when the admin
    allowed one and it fits the request and the reservation). After a transient
    failure the route that failed goes last. A route whose breaker is open and a
    key at its rate limit are skipped; if that leaves nothing, :class:`NotYet`
    says how long until something frees up.
    """
    routes = _candidate_routes(gen)
    if gen.mask_id and not routes:
        raise NoRoute(f"No provider for {gen.model.name} takes an edit mask: masks need an "
                      "OpenAI Images provider. An admin needs to add one.")
    spent = _spent_routes(gen)
    if spent:  # a route that used up its budget only when nothing else can serve
        routes = [r for r in routes if r.pk not in spent and _servable(r)] or routes
    last = gen.attempt_log.order_by("-number").first()
    if last and last.outcome in breaker.ROUTE_FAILURES:
        routes.sort(key=lambda r: r.pk == last.route_id)  # stable: the failed one goes last
    store = get_store()
    cfg = breaker.Config.from_settings()
    waits: list[tuple[float, str]] = []
    bookable: list[tuple] = []
    exhausted = False
    for route in routes:
        price = route.price_at()
        if price is None and not route.is_free:
            continue
        keys = list(
            route.provider.keys.usable()
            .order_by(F("last_used").asc(nulls_first=True), "id")
        )
        if not keys:
            exhausted = exhausted or route.provider.keys.filter(enabled=True).exists()
            continue
        decision = store.breaker_allow(route.pk, cfg)
        if not decision.allowed:
            waits.append((decision.wait, "provider resting after errors"))
            continue
        limits = limiter.Limits.of(route.provider)
        for key in keys:
            permit = limiter.acquire(key.pk, limits)
            if isinstance(permit, limiter.Permit):
                return Choice(route, key, price, permit)
            waits.append((permit.seconds, "waiting for rate limit"))
            if permit.reason == "rpm":
                bookable.append((permit.seconds, route.priority, key.pk, route, key, price))
    if bookable:  # book the soonest slot, so this job wakes exactly when it opens
        _, _, _, route, key, price = min(bookable, key=lambda b: b[:3])
        permit = limiter.acquire(
            key.pk, limiter.Limits.of(route.provider), ahead=resilience.MAX_COUNTDOWN_SECONDS
        )
        if isinstance(permit, limiter.Permit):
            choice = Choice(route, key, price, permit)
            raise NotYet(permit.delay, "waiting for rate limit", booked=choice)
    if waits:
        seconds, stage = min(waits)
        raise NotYet(seconds, stage)
    if exhausted:
        raise NoRoute(
            f"Every provider key for {gen.model.name} has used up its daily quota. "
            "Quotas reset at midnight Pacific time."
        )
    raise NoRoute(
        f"No provider is available for {gen.model.name} right now. "
        "An admin needs to add or enable a provider key."
    )


def _booked_choice(gen: Generation) -> Choice | None:
    """The route, key and slot booked when this job last waited, if still good."""
    slot = gen.booked_slot
    if not slot:
        return None
    Generation.objects.filter(pk=gen.pk).update(booked_slot=None)
    permit = limiter.Permit(slot["key"], slot["token"])
    route = (
        Route.objects.filter(pk=slot["route"], enabled=True, provider__enabled=True)
        .select_related("provider", "model")
        .first()
    )
    key = ProviderKey.objects.usable().filter(pk=slot["key"]).first()
    price = route.price_at() if route else None
    if (
        route is None
        or key is None
        or (price is None and not route.is_free)
        or not get_store().breaker_allow(route.pk, breaker.Config.from_settings()).allowed
    ):
        limiter.release(permit)
        return None
    return Choice(route, key, price, permit)


def _candidate_routes(gen: Generation) -> list[Route]:
    def routes_of(model: ModelSpec) -> list[Route]:
        return list(
            Route.objects.filter(model=model, enabled=True, provider__enabled=True)
            .select_related("provider", "model")
            .order_by("priority", "id")
        )

    routes = routes_of(gen.model)
    if gen.mask_id:  # only OpenAI's edits API takes a mask: never fail over to other kinds
        return [r for r in routes if r.provider.kind == "openai"]
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
    return not gen.image_size or not model.sizes or gen.image_size in model.sizes


def _upstream_size(gen: Generation, route: Route) -> str | None:
    return (gen.image_size or None) if route.model.sizes else None


def _fallback_cost(gen: Generation, route: Route) -> int:
    price = route.price_at()
    if price is None and not route.is_free:
        return gen.reserved_micros + 1  # never used
    size = _upstream_size(gen, route)
    usage = pricing.worst_case_usage(
        prompt=gen.prompt,
        references=gen.references.count(),
        image_tokens=route.model.image_tokens_for(size),
        text_tokens=route.model.estimate_text_tokens,
    )
    rates = pricing.Rates.of(price) if price else None
    return pricing.cost_micros(rates, usage, image_size=size, free=route.is_free)


def build_request(gen: Generation, route: Route) -> ImageRequest:
    def read(upload) -> Reference:
        with upload.file.open("rb") as fh:
            return Reference(fh.read(), upload.mime_type)

    return ImageRequest(
        upstream_model=route.upstream_model,
        prompt=gen.prompt,
        aspect_ratio=gen.aspect_ratio,
        image_size=_upstream_size(gen, route),
        references=tuple(read(u) for u in gen.ordered_references()),
        mask=read(gen.mask) if gen.mask_id else None,
    )


def _timeouts(gen: Generation, route: Route) -> Timeouts:
    """A route's timeouts, the read timeout longer after each "slow" attempt."""
    slow = gen.attempt_log.filter(outcome=ErrorKind.SLOW).count()
    read = route.provider.read_timeout * (1 + SLOW_TIMEOUT_GROWTH * slow)
    return Timeouts(route.provider.connect_timeout, read)


def _attempt(gen: Generation, choice: Choice) -> float | None:
    route, key = choice.route, choice.key
    ProviderKey.objects.filter(pk=key.pk).update(last_used=timezone.now())
    started = time.monotonic()
    result: ImageResult | None = None
    try:
        provider = provider_class(route.provider.kind)(
            route.provider.base_url, key.get_key(), _timeouts(gen, route)
        )
        result = provider.generate(build_request(gen, route))
        _fenced(gen).update(stage="saving")  # the card says so while the image is checked
        clean = images.clean_image(result.images[0].data, name="generated image", thumbnail=True)
        thumb = clean.thumbnail
    except KeyDecryptionError as exc:
        err = ProviderError(ErrorKind.KEY_INVALID, "A provider key is unusable.", detail=str(exc))
    except ProviderError as exc:
        err = exc
    except images.ImageRejected as exc:
        err = ProviderError(
            ErrorKind.CORRUPT,
            "The provider sent back a damaged image.",
            detail=exc.message,
            may_have_been_billed=True,
            usage=result.usage if result else None,
        )
    else:
        get_store().breaker_record(route.pk, True, breaker.Config.from_settings())
        try:
            _succeed(gen, choice, result, clean, thumb)
        except Exception as exc:  # our disk or database, not the provider
            return _not_saved(gen, choice, result, exc, started)
        _record(gen, choice, started, outcome="ok", http_status=result.http_status)
        return None
    if err.kind in breaker.ROUTE_FAILURES:
        get_store().breaker_record(route.pk, False, breaker.Config.from_settings())
    return _handle_error(gen, choice, err, started)


def _record(
    gen,
    choice: Choice,
    started: float,
    *,
    outcome: str,
    http_status=None,
    detail: str = "",
    retry_delay=None,
    billed: bool = False,
) -> None:
    Attempt.objects.create(
        generation=gen,
        number=gen.attempts,
        route=choice.route,
        key_label=choice.key.label,
        latency_ms=int((time.monotonic() - started) * 1000),
        http_status=http_status,
        outcome=outcome,
        detail=detail[:500],
        retry_delay=retry_delay,
        may_have_been_billed=billed,
    )


def _cost(choice: Choice, usage, image_size: str) -> int:
    rates = pricing.Rates.of(choice.price) if choice.price else None
    return pricing.cost_micros(
        rates, usage, image_size=image_size or None, free=choice.route.is_free
    )


def _succeed(gen: Generation, choice: Choice, result: ImageResult, clean, thumb: bytes) -> None:
    cost = _cost(choice, result.usage, gen.image_size)
    # Never charge past the reservation (a price that rose after admission, or more
    # text than the estimate allowed): no budget is overrun, and the ledger says why.
    charged, reason = cost, ""
    if cost > gen.reserved_micros:
        charged = gen.reserved_micros
        reason = (f"charged the {format_usd(charged)} reserved; the upstream's price for this "
                  f"image was {format_usd(cost)}")
    image = Image(
        generation=gen,
        user_id=gen.user_id,
        mime_type=clean.mime_type,
        bytes=len(clean.data),
        sha256=clean.sha256,
    )
    # Names of this run's own (a random part): a file half-written when the disk filled up
    # is known by its path, and removing it can never touch another run's image.
    stem = f"{gen.pk.hex}-{secrets.token_hex(3)}"
    files = [(image.file, f"{stem}.{clean.extension}", clean.data),
             (image.thumbnail, f"{stem}.webp", thumb)]
    paths = [field.field.generate_filename(image, name) for field, name, _ in files]
    won = False
    try:
        for field, name, data in files:
            field.save(name, ContentFile(data), save=False)
        image.width, image.height = clean.width, clean.height  # known: no need to reopen
        won = _settle_success(gen, choice, result, image, cost, charged, reason)
    finally:
        if not won:  # our lease was taken over (the other run owns the outcome), or we failed
            for (field, _, _), path in zip(files, paths, strict=True):
                name = field.name or path
                if field.storage.exists(name):
                    field.storage.delete(name)


def _settle_success(gen, choice, result, image, cost, charged, reason) -> bool:
    with transaction.atomic():
        won = _fenced(gen).update(
            status=Generation.SUCCEEDED,
            stage="",
            finished=timezone.now(),
            lease_until=None,
            actual_micros=charged,
            usage={**result.usage.as_dict(), "upstream_cost_micros": cost},
            route=choice.route,
            upstream_text=result.text[:4000],
            error_kind="",
            error_message="",
        )
        if won:
            image.save()
            quotas.settle(gen, charged, reason=reason)
            transaction.on_commit(lambda: _check_budget_alerts(gen.user_id))
    return bool(won)


def _check_budget_alerts(user_id: int) -> None:
    """Alerts are a courtesy: a broker hiccup must not touch the job (beat catches up)."""
    from accounts.tasks import check_budget_alerts

    try:
        check_budget_alerts.delay(user_id)
    except Exception:
        log.warning("could not queue the budget alert check for user %s", user_id,
                    exc_info=True)


# A model that answered without an image, or a call that timed out (and may have been
# billed), gets its retries once per job: another route runs the same model, so handing
# the job over would only repeat the answer or the bill. Other budgets are per route.
JOB_BUDGETS = frozenset({ErrorKind.NO_IMAGE, ErrorKind.SLOW})
ROUTE_BUDGETS = [kind for kind in resilience.RETRY_BUDGET if kind not in JOB_BUDGETS]


def _spent_routes(gen: Generation) -> set[int]:
    """Routes that have used up a retry budget (per error class) on this job."""
    counts = (gen.attempt_log.filter(outcome__in=ROUTE_BUDGETS)
              .values("route", "outcome").annotate(n=Count("pk")).order_by())
    return {row["route"] for row in counts
            if row["n"] > resilience.RETRY_BUDGET[ErrorKind(row["outcome"])]}


def _servable(route: Route) -> bool:
    """Could this route take a job at all: priced (or free), with a usable key?"""
    return ((route.is_free or route.price_at() is not None)
            and route.provider.keys.usable().exists())


def _handle_error(gen: Generation, choice: Choice, err: ProviderError, started: float):
    _penalise_key(choice.key, err)
    # Route budgets: a route that keeps failing hands the job to the next one, and the
    # job fails only once every route it may use has used up its budget. Job budgets
    # (no image, timeouts) are not handed over.
    budget = resilience.RETRY_BUDGET.get(err.kind, 0)
    per_job = err.kind in JOB_BUDGETS
    earlier = gen.attempt_log.filter(outcome=err.kind)
    same_kind = (earlier if per_job else earlier.filter(route=choice.route)).count() + 1
    over = same_kind > budget
    spent = _spent_routes(gen)
    if over and not per_job:
        spent.add(choice.route.pk)
    delay = None
    if (
        err.retryable
        and not (per_job and over)
        and any(r.pk not in spent and _servable(r) for r in _candidate_routes(gen))
        and gen.attempts < settings.NANOWEB_JOB_MAX_ATTEMPTS
    ):
        if choice.route.pk in spent:  # the next route starts afresh, without this one's wait
            delay = resilience.retry_delay(err.kind, 1, None)
        else:
            delay = resilience.retry_delay(err.kind, same_kind, err.retry_after)
        if timezone.now() + timedelta(seconds=delay) >= gen.deadline:
            delay = None
    _record(
        gen,
        choice,
        started,
        outcome=err.kind,
        http_status=err.http_status,
        detail=err.detail or err.message,
        retry_delay=delay,
        billed=err.may_have_been_billed,
    )
    log.info(
        "generation %s attempt %s: %s (%s) retry_in=%s",
        gen.pk,
        gen.attempts,
        err.kind,
        err.http_status,
        delay,
    )
    if delay is None:
        fail(gen, err.kind, err.message)
        return None
    return _requeue(gen, _retry_stage(err.kind), delay)


def _requeue(gen: Generation, stage: str, delay: float) -> float:
    at = timezone.now() + timedelta(seconds=delay)
    _fenced(gen).update(status=Generation.QUEUED, lease_until=None, stage=stage,
                        next_attempt_at=at, enqueued_at=at)
    return delay


def _not_saved(gen: Generation, choice: Choice, result: ImageResult, exc: Exception,
               started: float) -> float | None:
    """The provider made the image but it could not be stored (a full disk, a database
    error): try again a few times with backoff instead of leaving the job running until
    its lease runs out; if it keeps failing, the job fails and the person is refunded.
    The attempt is flagged as possibly billed, so the admin sees what it cost upstream."""
    log.exception("generation %s attempt %s: the image arrived but could not be saved",
                  gen.pk, gen.attempts)
    earlier = gen.attempt_log.filter(outcome=NOT_SAVED).count()
    delay = None
    if earlier < SAVE_RETRIES and gen.attempts < settings.NANOWEB_JOB_MAX_ATTEMPTS:
        delay = resilience.backoff_delay(earlier + 1)
        if timezone.now() + timedelta(seconds=delay) >= gen.deadline:
            delay = None
    _record(gen, choice, started, outcome=NOT_SAVED, http_status=result.http_status,
            detail=f"{type(exc).__name__}: {exc}", retry_delay=delay, billed=True)
    if delay is None:
        fail(gen, NOT_SAVED, "The image arrived but could not be stored, even after retries.")
        return None
    return _requeue(gen, "queued", delay)


def _postpone(gen: Generation, wait: NotYet) -> float | None:
    """Hand the job back to the queue until a route or key frees up; the attempt it
    claimed is given back, since no call was made."""
    now = timezone.now()
    seconds = min(max(wait.seconds, 0.05), resilience.MAX_COUNTDOWN_SECONDS)
    if now + timedelta(seconds=seconds) >= gen.deadline:
        if wait.booked:
            limiter.release(wait.booked.permit)
        fail(
            gen,
            ErrorKind.RATE_LIMITED,
            "The providers stayed busy until the deadline; no image was made.",
        )
        return None
    booked = wait.booked
    _fenced(gen).update(
        status=Generation.QUEUED,
        attempts=F("attempts") - 1,
        lease_until=None,
        booked_slot=booked
        and {"route": booked.route.pk, "key": booked.key.pk, "token": booked.permit.token},
        stage=wait.stage,
        next_attempt_at=now + timedelta(seconds=seconds),
        enqueued_at=now + timedelta(seconds=seconds),
    )
    return seconds


def _retry_stage(kind: ErrorKind) -> str:
    return {
        ErrorKind.RATE_LIMITED: "waiting for rate limit",
        ErrorKind.KEY_EXHAUSTED: "switching key",
        ErrorKind.KEY_INVALID: "switching key",
    }.get(kind, "retrying")


def _penalise_key(key: ProviderKey, err: ProviderError) -> None:
    if err.kind == ErrorKind.KEY_EXHAUSTED:
        ProviderKey.objects.filter(pk=key.pk).update(exhausted_until=next_midnight(zone=PACIFIC))
    elif err.kind == ErrorKind.KEY_INVALID:
        ProviderKey.objects.filter(pk=key.pk).update(
            enabled=False, disabled_reason=(err.detail or err.message)[:300]
        )
        log.warning("provider key %s disabled: %s", key, err.detail or err.message)


def fail(gen: Generation, kind: str, message: str) -> bool:
    """Finish a job without an image and return its whole reservation.

    Attempts the upstream may have billed anyway are flagged on the Attempt for
    admins; the person is never charged for an image they did not get.
    """
    with transaction.atomic():
        won = Generation.objects.filter(
            pk=gen.pk,
            status__in=[Generation.QUEUED, Generation.RUNNING],
            attempts=gen.attempts,
        ).update(
            status=Generation.FAILED,
            stage="",
            finished=timezone.now(),
            lease_until=None,
            error_kind=str(kind),
            error_message=message[:500],
            actual_micros=0,
            refunded=True,
        )
        if won:
            quotas.release(gen, reason=f"no image ({kind}); reservation released")
    return bool(won)


def reconcile(now=None) -> dict[str, int]:
    """Beat, every minute: nothing stays queued or running forever."""
    from generations.jobs import enqueue

    now = now or timezone.now()
    counts = {"expired": 0, "reclaimed": 0, "requeued": 0}
    for gen in Generation.objects.in_flight().filter(deadline__lt=now):
        counts["expired"] += fail(
            gen, "deadline", "No image arrived before the deadline; the reservation was released."
        )
    stale = Generation.objects.filter(status=Generation.RUNNING, lease_until__lt=now)
    counts["reclaimed"] = stale.update(
        status=Generation.QUEUED,
        lease_until=None,
        stage="queued",
        enqueued_at=None,
        next_attempt_at=now,
    )
    lost = Generation.objects.filter(
        Q(enqueued_at__isnull=True)
        | Q(enqueued_at__lt=now - timedelta(seconds=settings.NANOWEB_REQUEUE_AFTER_SECONDS)),
        status=Generation.QUEUED,
        next_attempt_at__lte=now,
    )
    ids = list(lost.values_list("pk", flat=True)[:500])
    Generation.objects.filter(pk__in=ids).update(enqueued_at=now)
    counts["requeued"] = len(ids)
    transaction.on_commit(lambda: enqueue(ids))
    counts["permits_pruned"] = get_store().prune()
    return counts


def release_stale_reservations(now=None) -> int:
    """Hourly audit: a reservation older than the longest job deadline (plus an hour)
    belongs to a job that should long be over; finish it and give the money back."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NANOWEB_JOB_DEADLINE_SECONDS + 3600)
    released = 0
    for gen in quotas.open_reservations(cutoff):
        if gen.status in (Generation.QUEUED, Generation.RUNNING):
            released += fail(gen, "deadline", "No image arrived before the deadline; "
                             "the reservation was released.")
        else:
            released += quotas.release(gen, reason="stale reservation released by the audit")
    if released:
        log.warning("released %s stale reservation(s)", released)
    return released
