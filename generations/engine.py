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
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import quotas
from accounts.models import format_usd
from accounts.periods import next_midnight
from generations import images, pricing, queue, resilience
from generations.crypto import KeyDecryptionError
from generations.failures import OK, ErrorKind
from generations.models import Attempt, Generation, Image, Notice, ProviderKey, Route
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    ProviderError,
    Reference,
    Timeouts,
    provider_class,
)
from generations.resilience import breaker, limiter
from generations.resilience.store import get_store
from generations.resilience.types import PACIFIC
from generations.routing import (
    JOB_BUDGETS,
    Choice,
    NoRoute,
    NotYet,
    candidate_routes,
    next_choice,
    servable,
    spent_routes,
    upstream_size,
)

log = logging.getLogger(__name__)

SAVE_RETRIES = 2
SLOW_TIMEOUT_GROWTH = 0.5  # each earlier "slow" attempt gives the next one 50 % more time


def run_generation(generation_id) -> float | None:
    """Run one attempt. Returns seconds until the next attempt, or None when done."""
    gen = claim(generation_id)
    if gen is None:
        return None
    if gen.attempts > settings.NANOWEB_JOB_MAX_ATTEMPTS or timezone.now() > gen.deadline:
        fail(
            gen,
            ErrorKind.TRANSIENT,
            _("No image could be made after several attempts; the provider kept failing."),
        )
        return None
    try:
        choice = next_choice(gen)
    except NoRoute as exc:
        fail(gen, exc.kind, exc.message)
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


def build_request(gen: Generation, route: Route) -> ImageRequest:
    def read(upload) -> Reference:
        with upload.file.open("rb") as fh:
            return Reference(fh.read(), upload.mime_type)

    return ImageRequest(
        upstream_model=route.upstream_model,
        prompt=gen.prompt,
        aspect_ratio=gen.aspect_ratio,
        image_size=upstream_size(gen, route),
        thinking_level=(gen.params or {}).get("thinking_level"),
        grounding=bool((gen.params or {}).get("grounding")),
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
        err = ProviderError(
            ErrorKind.KEY_INVALID, _("A provider key is unusable."), detail=str(exc)
        )
    except ProviderError as exc:
        err = exc
    except images.ImageRejected as exc:
        err = ProviderError(
            ErrorKind.CORRUPT,
            _("The provider sent back a damaged image."),
            detail=exc.message,
            may_have_been_billed=True,
            usage=result.usage if result else None,
        )
    else:
        breaker.record(route.pk, True)
        try:
            _succeed(gen, choice, result, clean, thumb)
        except Exception as exc:  # our disk or database, not the provider
            return _not_saved(gen, choice, result, exc, started)
        _record(gen, choice, started, outcome=OK, http_status=result.http_status)
        return None
    if err.kind in breaker.ROUTE_FAILURES:
        breaker.record(route.pk, False)
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


def _succeed(gen: Generation, choice: Choice, result: ImageResult, clean, thumb: bytes) -> None:
    cost = pricing.route_cost(choice.route, choice.price, result.usage, gen.image_size)
    # Never charge past the reservation (a price that rose after admission, or more
    # text than the estimate allowed): no budget is overrun, and the ledger says why.
    charged, reason = cost, ""
    if cost > gen.reserved_micros:
        charged = gen.reserved_micros
        reason = _(
            "charged the %(reserved)s reserved; the upstream's price for this image was %(cost)s"
        ) % {"reserved": format_usd(charged), "cost": format_usd(cost)}
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
    files = [
        (image.file, f"{stem}.{clean.extension}", clean.data),
        (image.thumbnail, f"{stem}.webp", thumb),
    ]
    paths = [field.field.generate_filename(image, name) for field, name, _data in files]
    won = False
    try:
        for field, name, data in files:
            field.save(name, ContentFile(data), save=False)
        image.width, image.height = clean.width, clean.height  # known: no need to reopen
        won = _settle_success(gen, choice, result, image, cost, charged, reason)
    finally:
        if not won:  # our lease was taken over (the other run owns the outcome), or we failed
            for (field, _name, _data), path in zip(files, paths, strict=True):
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
            grounding=result.extra.get("grounding") or {},
            error_kind="",
            error_message="",
        )
        if won:
            image.save()
            quotas.settle(gen, charged, reason=reason)
            transaction.on_commit(lambda: queue.check_budget_alerts(gen.user_id))
    return bool(won)


def _handle_error(gen: Generation, choice: Choice, err: ProviderError, started: float):
    _penalise_key(choice.key, err)
    if err.kind == ErrorKind.MODEL_GONE:
        _retire_route(choice.route, err)
    # Route budgets: a route that keeps failing hands the job to the next one, and the
    # job fails only once every route it may use has used up its budget. Job budgets
    # (no image, timeouts) are not handed over.
    budget = resilience.RETRY_BUDGET.get(err.kind, 0)
    per_job = err.kind in JOB_BUDGETS
    earlier = gen.attempt_log.filter(outcome=err.kind)
    same_kind = (earlier if per_job else earlier.filter(route=choice.route)).count() + 1
    over = same_kind > budget
    spent = spent_routes(gen)
    if over and not per_job:
        spent.add(choice.route.pk)
    delay = None
    if (
        err.retryable
        and not (per_job and over)
        and any(r.pk not in spent and servable(r) for r in candidate_routes(gen))
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
        fail(gen, err.kind, _with_replacement(gen, err))
        return None
    return _requeue(gen, _retry_stage(err.kind), delay)


def _with_replacement(gen: Generation, err: ProviderError) -> str:
    """A model the provider shut down: say which model replaces it, if an admin said."""
    replacement = gen.model.replacement
    if err.kind != ErrorKind.MODEL_GONE or replacement is None:
        return err.message
    return _("%(message)s %(replacement)s replaces it.") % {
        "message": err.message.rstrip(".") + ".",
        "replacement": replacement.label,
    }


def _retire_route(route: Route, err: ProviderError) -> None:
    """The upstream no longer knows the route's model: take the route out of service with
    the upstream's reason, and tell the admins (once, by whoever retires it first)."""
    reason = (err.detail or err.message)[:500]
    retired = Route.objects.filter(pk=route.pk, enabled=True).update(
        enabled=False, retired_at=timezone.now(), retired_reason=reason
    )
    if retired:
        log.warning("route %s retired: %s", route, reason)
        Notice.objects.create(
            title=_("A route was retired: %(route)s") % {"route": route},
            message=_(
                "%(provider)s answered that it no longer serves %(upstream)s, so the "
                "route was disabled and jobs fail over to the model's other routes. Its "
                "answer: %(reason)s"
            )
            % {"provider": route.provider.name, "upstream": route.upstream_model, "reason": reason},
        )


def _requeue(gen: Generation, stage: str, delay: float) -> float:
    at = timezone.now() + timedelta(seconds=delay)
    _fenced(gen).update(
        status=Generation.QUEUED, lease_until=None, stage=stage, next_attempt_at=at, enqueued_at=at
    )
    return delay


def _not_saved(
    gen: Generation, choice: Choice, result: ImageResult, exc: Exception, started: float
) -> float | None:
    """The provider made the image but it could not be stored (a full disk, a database
    error): try again a few times with backoff instead of leaving the job running until
    its lease runs out; if it keeps failing, the job fails and the person is refunded.
    The attempt is flagged as possibly billed, so the admin sees what it cost upstream."""
    log.exception(
        "generation %s attempt %s: the image arrived but could not be saved", gen.pk, gen.attempts
    )
    earlier = gen.attempt_log.filter(outcome=ErrorKind.NOT_SAVED).count()
    delay = None
    if earlier < SAVE_RETRIES and gen.attempts < settings.NANOWEB_JOB_MAX_ATTEMPTS:
        delay = resilience.backoff_delay(earlier + 1)
        if timezone.now() + timedelta(seconds=delay) >= gen.deadline:
            delay = None
    _record(
        gen,
        choice,
        started,
        outcome=ErrorKind.NOT_SAVED,
        http_status=result.http_status,
        detail=f"{type(exc).__name__}: {exc}",
        retry_delay=delay,
        billed=True,
    )
    if delay is None:
        fail(
            gen,
            ErrorKind.NOT_SAVED,
            _("The image arrived but could not be stored, even after retries."),
        )
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
            _("The providers stayed busy until the deadline; no image was made."),
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
        ErrorKind.REFUSED: "switching provider",
        ErrorKind.MODEL_GONE: "switching provider",
    }.get(kind, "retrying")


def _penalise_key(key: ProviderKey, err: ProviderError) -> None:
    if err.kind == ErrorKind.KEY_EXHAUSTED:
        ProviderKey.objects.filter(pk=key.pk).update(exhausted_until=next_midnight(zone=PACIFIC))
    elif err.kind == ErrorKind.KEY_INVALID:
        ProviderKey.objects.filter(pk=key.pk).update(
            enabled=False, disabled_reason=(err.detail or err.message)[:300]
        )
        log.warning("provider key %s disabled: %s", key, err.detail or err.message)


def fail(gen: Generation, kind: ErrorKind, message: str) -> bool:
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
            error_kind=kind,
            error_message=str(message)[:500],
            actual_micros=0,
            refunded=True,
        )
        if won:
            quotas.release(
                gen, reason=_("no image (%(kind)s); reservation released") % {"kind": kind}
            )
    return bool(won)


DEADLINE_MESSAGE = gettext_lazy(
    "No image arrived before the deadline; the reservation was released."
)


def reconcile(now=None) -> dict[str, int]:
    """Beat, every minute: nothing stays queued or running forever."""
    now = now or timezone.now()
    counts = {"expired": 0, "reclaimed": 0, "requeued": 0}
    for gen in Generation.objects.in_flight().filter(deadline__lt=now):
        counts["expired"] += fail(gen, ErrorKind.DEADLINE, DEADLINE_MESSAGE)
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
    transaction.on_commit(lambda: queue.enqueue(ids))
    counts["permits_pruned"] = get_store().prune()
    return counts


def release_stale_reservations(now=None) -> int:
    """Hourly audit: a reservation older than the longest job deadline (plus an hour)
    belongs to a job that should long be over; finish it and give the money back."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NANOWEB_JOB_DEADLINE_SECONDS + 3600)
    released = 0
    stale = quotas.open_reservations(cutoff).values("generation_id")
    for gen in Generation.objects.filter(pk__in=stale):
        if gen.status in (Generation.QUEUED, Generation.RUNNING):
            released += fail(gen, ErrorKind.DEADLINE, DEADLINE_MESSAGE)
        else:
            released += quotas.release(gen, reason=_("stale reservation released by the audit"))
    if released:
        log.warning("released %s stale reservation(s)", released)
    return released
