"""What happens after an upstream answered, for both calling models (one call, one
answer; and queue-style submit and poll): settle an image, retry or fail over after a
classified failure, or finish a job without an image and return its money.

Every write is fenced on (status=running, attempts=n): a job whose lease expired and
was taken over can never be finished twice.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts import alerts, quotas
from accounts.models import format_usd
from accounts.periods import next_midnight
from generations import images, pricing, queue, resilience
from generations.failures import OK, ErrorKind
from generations.models import Attempt, Generation, Image, Notice, ProviderKey, Route
from generations.models.jobs import SpooledAnswer
from generations.providers.base import GeneratedImage, ImageResult, ProviderError, Usage
from generations.resilience import breaker
from generations.resilience.types import PACIFIC
from generations.routing import JOB_BUDGETS, Choice, candidate_routes, servable, spent_routes

log = logging.getLogger(__name__)

SAVE_RETRIES = 2


def fenced(gen: Generation):
    return Generation.objects.filter(pk=gen.pk, status=Generation.RUNNING, attempts=gen.attempts)


def record(
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


def settle_answer(
    gen: Generation, choice: Choice, result: ImageResult, started: float, *, spooled=False
):
    """An upstream answered with an image: check it, store it and settle the money, or
    retry when it is damaged or could not be stored. Returns seconds until the next
    attempt, or None when the job is done. ``spooled``: the answer is one kept from an
    earlier attempt that could not store it (the breaker heard about that call then)."""
    if gen.source != "api":  # a studio card says so while the image is checked
        fenced(gen).update(stage="saving")
    try:
        clean = images.clean_image(result.images[0].data, name="generated image", thumbnail=True)
    except images.ImageRejected as exc:
        err = ProviderError(
            ErrorKind.CORRUPT,
            _("The provider sent back a damaged image."),
            detail=exc.message,
            may_have_been_billed=True,
            usage=result.usage,
        )
        return failed(gen, choice, err, started)
    if not spooled:
        breaker.record(choice.route.pk, True, gen.pk)
    try:  # the attempt is logged in the settling transaction (one write, not two)
        succeed(
            gen,
            choice,
            result,
            clean,
            clean.thumbnail,
            log=lambda: record(gen, choice, started, outcome=OK, http_status=result.http_status),
        )
    except Exception as exc:  # our disk or database, not the provider
        return not_saved(gen, choice, result, exc, started)
    return None


def failed(gen: Generation, choice: Choice, err: ProviderError, started: float):
    """An upstream call failed with a classified error: count it against the route's
    breaker where it is the route's fault, then retry, fail over or fail."""
    if err.kind in breaker.ROUTE_FAILURES:
        breaker.record(choice.route.pk, False, gen.pk)
    return handle_error(gen, choice, err, started)


def succeed(
    gen: Generation,
    choice: Choice,
    result: ImageResult,
    clean,
    thumb: bytes,
    *,
    fence=None,
    log=None,
) -> bool:
    """Store the image and settle its money; False when the job was no longer ours to
    finish. ``fence``: the rows that may be finished (default: the running attempt's,
    :func:`fenced`; an economy row is fenced on its Batch API job instead). ``log``:
    writes the attempt's row, in the same transaction."""
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
        won = _settle_success(gen, choice, result, image, cost, charged, reason, fence, log)
    finally:
        if not won:  # our lease was taken over (the other run owns the outcome), or we failed
            for (field, _name, _data), path in zip(files, paths, strict=True):
                name = field.name or path
                if field.storage.exists(name):
                    field.storage.delete(name)
    return won


def _settle_success(gen, choice, result, image, cost, charged, reason, fence, log) -> bool:
    with transaction.atomic():
        won = (fence if fence is not None else fenced(gen)).update(
            status=Generation.SUCCEEDED,
            stage="",
            finished=timezone.now(),
            lease_until=None,
            actual_micros=charged,
            usage={**result.usage.as_dict(), "upstream_cost_micros": cost},
            route=choice.route,
            upstream_text=result.text[:4000],
            grounding=result.extra.get("grounding") or {},
            served_by=str(result.extra.get("served_by") or "")[:200],
            upstream_job=None,  # a queue-style upstream's request is over
            error_kind="",
            error_message="",
        )
        if won:
            image.save()
            quotas.settle(gen, charged, reason=reason)
            _drop_spool(gen)
            if alerts.crossed(gen, charged):  # else nothing to fire: no message
                transaction.on_commit(lambda: queue.check_budget_alerts(gen.user_id))
        if log is not None:  # won or not, the call was made and answered
            log()
    return bool(won)


def _drop_spool(gen: Generation) -> None:
    """Delete the answer kept for ``gen``'s save retries; no query when its claim read
    (``select_related``) that there is none."""
    if Generation.spool.is_cached(gen):
        try:
            gen.spool  # noqa: B018 -- cached: reads no row
        except SpooledAnswer.DoesNotExist:
            return
    SpooledAnswer.objects.filter(generation=gen).delete()


def handle_error(gen: Generation, choice: Choice, err: ProviderError, started: float):
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
            # A used-up key's wait belongs to the key (it rests), not to the job: another
            # key may serve at once.
            wait = None if err.kind == ErrorKind.KEY_EXHAUSTED else err.retry_after
            delay = resilience.retry_delay(err.kind, same_kind, wait)
        if timezone.now() + timedelta(seconds=delay) >= gen.deadline:
            delay = None
    record(
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
    return requeue(gen, _retry_stage(err.kind), delay)


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


def requeue(gen: Generation, stage: str, delay: float) -> float:
    at = timezone.now() + timedelta(seconds=delay)
    fenced(gen).update(
        status=Generation.QUEUED, lease_until=None, stage=stage, next_attempt_at=at, enqueued_at=at
    )
    return delay


def not_saved(
    gen: Generation, choice: Choice, result: ImageResult, exc: Exception, started: float
) -> float | None:
    """The provider made the image but it could not be stored (a full disk, a database
    error): keep the answer (:func:`spool`) and try storing it again a few times with
    backoff, instead of leaving the job running until its lease runs out; the retries
    store the bytes already received and never call the upstream again. If it keeps
    failing, the job fails and the person is refunded. The attempt is flagged as
    possibly billed, so the admin sees what it cost upstream."""
    log.exception(
        "generation %s attempt %s: the image arrived but could not be saved", gen.pk, gen.attempts
    )
    earlier = gen.attempt_log.filter(outcome=ErrorKind.NOT_SAVED).count()
    delay = None
    if earlier < SAVE_RETRIES and gen.attempts < settings.NANOWEB_JOB_MAX_ATTEMPTS:
        delay = resilience.backoff_delay(earlier + 1)
        if timezone.now() + timedelta(seconds=delay) >= gen.deadline:
            delay = None
    record(
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
    spool(gen, choice, result)
    return requeue(gen, "queued", delay)


def spool(gen: Generation, choice: Choice, result: ImageResult) -> None:
    """Keep an answer that could not be stored for the next try (once: a retry that
    fails again keeps the first). Where even this fails (the database is the trouble),
    the next try calls the upstream again, as it would have without a spool."""
    image = result.images[0]
    answer = {
        "usage": result.usage.as_dict(),
        "text": result.text,
        "model_version": result.model_version,
        "response_id": result.response_id,
        "http_status": result.http_status,
        "extra": result.extra,
    }
    try:
        if SpooledAnswer.objects.filter(generation=gen).exists():
            return
        SpooledAnswer.objects.create(
            generation=gen,
            route=choice.route,
            key=choice.key,
            price=choice.price,
            data=image.data,
            mime_type=image.mime_type[:30],
            answer=answer,
        )
    except Exception:
        log.exception("generation %s: the answer could not be kept for the retry", gen.pk)


def settle_spooled(gen: Generation, kept: SpooledAnswer) -> float | None:
    """Store an answer an earlier attempt received but could not store: no upstream
    call, no new charge upstream."""
    answer = kept.answer
    result = ImageResult(
        images=(GeneratedImage(bytes(kept.data), kept.mime_type),),
        usage=Usage(**answer.get("usage", {})),
        text=answer.get("text", ""),
        model_version=answer.get("model_version", ""),
        response_id=answer.get("response_id", ""),
        http_status=answer.get("http_status", 200),
        extra=answer.get("extra") or {},
    )
    choice = Choice(kept.route, kept.key, kept.price, None)
    return settle_answer(gen, choice, result, time.monotonic(), spooled=True)


def _retry_stage(kind: ErrorKind) -> str:
    return {
        ErrorKind.RATE_LIMITED: "waiting for rate limit",
        ErrorKind.KEY_EXHAUSTED: "switching key",
        ErrorKind.KEY_INVALID: "switching key",
        ErrorKind.OUT_OF_CREDIT: "switching key",
        ErrorKind.REFUSED: "switching provider",
        ErrorKind.MODEL_GONE: "switching provider",
    }.get(kind, "retrying")


def _penalise_key(key: ProviderKey, err: ProviderError) -> None:
    if err.kind == ErrorKind.OUT_OF_CREDIT:
        _rest_broke_key(key, err)
    elif err.kind == ErrorKind.KEY_EXHAUSTED:
        # Until the upstream's stated wait (a Space's GPU quota: "retry in 0:09:48"), else
        # until Google's daily quotas reset, at Pacific midnight.
        until = (
            timezone.now() + timedelta(seconds=err.retry_after)
            if err.retry_after
            else next_midnight(zone=PACIFIC)
        )
        ProviderKey.objects.filter(pk=key.pk).update(exhausted_until=until)
    elif err.kind == ErrorKind.KEY_INVALID:
        ProviderKey.objects.filter(pk=key.pk).update(
            enabled=False, disabled_reason=(err.detail or err.message)[:300]
        )
        log.warning("provider key %s disabled: %s", key, err.detail or err.message)


def _rest_broke_key(key: ProviderKey, err: ProviderError) -> None:
    """An account out of credit comes back only when someone tops it up: rest the key
    for a while (it is tried again after that) and tell the admins, once per rest."""
    now = timezone.now()
    until = now + timedelta(seconds=settings.NANOWEB_CREDIT_REST_SECONDS)
    rested = (
        ProviderKey.objects.filter(pk=key.pk)
        .filter(Q(exhausted_until__isnull=True) | Q(exhausted_until__lte=now))
        .update(exhausted_until=until)
    )
    if rested:
        log.warning("provider key %s is out of credit: %s", key, err.detail or err.message)
        Notice.objects.create(
            title=_("A provider account is out of credit: %(key)s") % {"key": key},
            message=_(
                "%(provider)s refused the key %(label)s because the account has no credit "
                "left. Jobs use the other keys and routes meanwhile; the key is tried again "
                "after %(minutes)s minutes. Top up the account to bring it back. Its answer: "
                "%(reason)s"
            )
            % {
                "provider": key.provider.name,
                "label": key.label,
                "minutes": settings.NANOWEB_CREDIT_REST_SECONDS // 60,
                "reason": (err.detail or err.message)[:300],
            },
        )


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
            _drop_spool(gen)
            if gen.upstream_job:  # a queue-style upstream still has it: call it off there
                transaction.on_commit(lambda: queue.cancel_upstream([gen.pk]))
    return bool(won)


DEADLINE_MESSAGE = gettext_lazy(
    "No image arrived before the deadline; the reservation was released."
)
