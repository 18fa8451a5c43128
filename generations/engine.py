"""One attempt of one job: claim → pick route → call → classify → settle, retry or fail.

The database is the source of truth: a job is claimed with a conditional UPDATE
and a lease, and every later write is fenced on (status=running, attempts=n), so
a job whose lease expired and was taken over can never be finished twice. No
network call happens inside a transaction.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Case, F, PositiveSmallIntegerField, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts import quotas
from generations import leases, polling, queue, resilience
from generations.crypto import KeyDecryptionError
from generations.failures import ErrorKind
from generations.models import Generation, ProviderKey, Route
from generations.models.jobs import SpooledAnswer
from generations.outcomes import (
    DEADLINE_MESSAGE,
    fail,
    failed,
    fenced,
    settle_answer,
    settle_spooled,
)
from generations.providers.base import ImageRequest, Pending, ProviderError, Reference, Timeouts
from generations.resilience import limiter
from generations.resilience.store import get_store
from generations.routing import (
    Choice,
    NoRoute,
    NotYet,
    next_choice,
    tried_before,
    upstream_size,
)

log = logging.getLogger(__name__)

SLOW_TIMEOUT_GROWTH = 0.5  # each earlier "slow" attempt gives the next one 50 % more time
# While the broker still has messages waiting, a queued job not picked up in time may
# just be behind them: it is sent again only after this many times the usual wait, so a
# backlog is never multiplied by duplicates (a duplicate is harmless, claim() being
# conditional, but it lengthens the line).
BACKLOG_PATIENCE = 6


def run_generation(generation_id) -> float | None:
    """Run one attempt. Returns seconds until the next attempt, or None when done."""
    gen = claim(generation_id)
    if gen is None:
        return None
    with leases.kept(gen) as held:
        return _run(gen, held)


def _run(gen: Generation, held: leases.Held) -> float | None:
    kept = _spooled(gen)
    if kept is not None:  # an earlier attempt received the image but could not store it
        return settle_spooled(gen, kept)
    if gen.upstream_job:  # a queue-style upstream is working on it: ask how far it got
        return polling.poll(gen)
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
    held.keep(choice.permit)
    try:
        return _attempt(gen, choice)
    finally:
        limiter.release(choice.permit)


def claim(generation_id) -> Generation | None:
    """Take a job for one attempt, or for one poll of the upstream request it is
    waiting on (a poll uses none of the job's attempts)."""
    now = timezone.now()
    claimable = Q(status=Generation.QUEUED, next_attempt_at__lte=now) | Q(
        status=Generation.RUNNING, lease_until__lt=now
    )
    claimed = Generation.objects.filter(claimable, pk=generation_id).update(
        status=Generation.RUNNING,
        stage=Case(When(upstream_job__isnull=True, then=Value("generating")), default=F("stage")),
        attempts=Case(
            When(upstream_job__isnull=True, then=F("attempts") + 1),
            default=F("attempts"),
            output_field=PositiveSmallIntegerField(),
        ),
        lease_until=now + timedelta(seconds=leases.lease_seconds()),
        started=Coalesce("started", Value(now)),
    )
    if not claimed:
        return None
    return Generation.objects.select_related("model", "user__team", "spool").get(pk=generation_id)


def _spooled(gen: Generation) -> SpooledAnswer | None:
    try:
        return gen.spool
    except SpooledAnswer.DoesNotExist:
        return None


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
        allow_fallback=route.allow_fallback_model,
        deadline_seconds=max((gen.deadline - timezone.now()).total_seconds(), 1.0),
        idempotency_key=_idempotency_key(gen, route),
    )


def _idempotency_key(gen: Generation, route: Route) -> str:
    """Stays the same across attempts whose submit may have reached the upstream (and a
    crash before the attempt was logged); changes after an answer that it was not taken."""
    refused = (
        gen.attempt_log.filter(route=route, may_have_been_billed=False).count()
        if tried_before(gen)
        else 0
    )
    return f"nanoweb-{gen.pk}-r{route.pk}-{refused}"


def _timeouts(gen: Generation, route: Route) -> Timeouts:
    """A route's timeouts, the read timeout longer after each "slow" attempt."""
    slow = gen.attempt_log.filter(outcome=ErrorKind.SLOW).count() if tried_before(gen) else 0
    read = route.provider.read_timeout * (1 + SLOW_TIMEOUT_GROWTH * slow)
    return Timeouts(route.provider.connect_timeout, read)


def _attempt(gen: Generation, choice: Choice) -> float | None:
    ProviderKey.objects.filter(pk=choice.key.pk).update(last_used=timezone.now())
    started = time.monotonic()
    try:
        provider = choice.connect(_timeouts(gen, choice.route))
        request = build_request(gen, choice.route)
        if provider.queued:
            webhook = polling.webhook_url(choice.route.provider)
            answer = provider.submit(request, webhook_url=webhook)
            if isinstance(answer, Pending):
                return polling.submitted(gen, choice, answer)
        else:
            answer = provider.generate(request)
    except KeyDecryptionError as exc:
        err = ProviderError(
            ErrorKind.KEY_INVALID, _("A provider key is unusable."), detail=str(exc)
        )
        return failed(gen, choice, err, started)
    except ProviderError as err:
        return failed(gen, choice, err, started)
    return settle_answer(gen, choice, answer, started)


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
    fenced(gen).update(
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


def sweep(now=None) -> dict[str, int]:
    """Beat, every NANOWEB_SWEEP_SECONDS: a job whose worker died (its lease ran out
    without a heartbeat) goes back to the queue, and a queued job whose message the
    broker lost is sent again."""
    now = now or timezone.now()
    stale = Generation.objects.filter(status=Generation.RUNNING, lease_until__lt=now)
    reclaimed = stale.update(
        status=Generation.QUEUED,
        lease_until=None,
        stage="queued",
        enqueued_at=None,
        next_attempt_at=now,
    )
    late = timedelta(seconds=settings.NANOWEB_REQUEUE_AFTER_SECONDS)
    lost = Generation.objects.filter(
        Q(enqueued_at__isnull=True) | Q(enqueued_at__lt=now - late),
        status=Generation.QUEUED,
        next_attempt_at__lte=now,
    )
    rows = list(lost.values_list("pk", "enqueued_at")[:500])
    if any(sent is not None for _pk, sent in rows) and queue.waiting_messages() != 0:
        patient = now - late * BACKLOG_PATIENCE  # a backlog, or the broker cannot say
        rows = [(pk, sent) for pk, sent in rows if sent is None or sent < patient]
    ids = [pk for pk, _sent in rows]
    if ids:
        Generation.objects.filter(pk__in=ids).update(enqueued_at=now)
        transaction.on_commit(lambda: queue.enqueue(ids))
    return {"reclaimed": reclaimed, "requeued": len(ids)}


def reconcile(now=None) -> dict[str, int]:
    """Beat, every minute: nothing stays queued or running forever."""
    now = now or timezone.now()
    counts = {"expired": 0}
    for gen in Generation.objects.in_flight().filter(deadline__lt=now):
        counts["expired"] += fail(gen, ErrorKind.DEADLINE, DEADLINE_MESSAGE)
    counts.update(sweep(now))
    counts["permits_pruned"] = get_store().prune()
    # An answer kept for a job that ended some other way (cancelled with it) is no use.
    counts["spools_dropped"] = SpooledAnswer.objects.filter(
        generation__status__in=Generation.FINISHED
    ).delete()[0]
    return counts


def release_stale_reservations(now=None) -> int:
    """Hourly audit: a reservation older than the longest job deadline (plus an hour)
    belongs to a job that should long be over; finish it and give the money back."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NANOWEB_JOB_DEADLINE_SECONDS + 3600)
    released = 0
    stale = quotas.open_reservations(cutoff).values("generation_id")
    # A job's own deadline decides: economy rows wait up to 50 h at Google, reserved.
    for gen in Generation.objects.filter(pk__in=stale, deadline__lt=now - timedelta(hours=1)):
        if gen.status in (Generation.QUEUED, Generation.RUNNING):
            released += fail(gen, ErrorKind.DEADLINE, DEADLINE_MESSAGE)
        else:
            released += quotas.release(gen, reason=_("stale reservation released by the audit"))
    if released:
        log.warning("released %s stale reservation(s)", released)
    return released
