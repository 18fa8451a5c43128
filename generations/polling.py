"""Queue-style upstreams (fal.ai, Replicate): submit once, poll on countdowns, cancel.

An attempt on such a route submits the request (engine.py); the upstream's answer, an
:class:`UpstreamJob` (its id and the status, result and cancel URLs it returned), is
stored on the job with the route, key and price it went out with, and the job goes
back to the queue with a Celery countdown until its next poll. Nothing waits: 200 jobs
queued at fal occupy no worker slot and no connection.

A poll claims the job like an attempt but uses none of its attempts (engine.claim). A
worker that crashes mid-poll, or a job reclaimed after its lease, polls the same
upstream request again: it is never submitted (and paid for) twice. When the upstream
finishes, the answer goes the same way as a one-call answer (outcomes.settle_answer
or outcomes.failed): the image is stored and settled at the submit's price, or the
failure is classified, retried or failed over. Asking can fail too (the status URL
unreachable, a 5xx, a 429): that is not the request's failure, so the poll is retried
with backoff, and only after :data:`POLL_ERRORS` in a row is the request given up
(cancelled upstream) and the job retried like any failed attempt.

Polls start :setting:`NANOWEB_POLL_MIN_SECONDS` after the submit and space out with
the request's age (a quarter of its time in the queue; once the model works on it,
15 % of its working time) up to :setting:`NANOWEB_POLL_MAX_SECONDS`, or
:setting:`NANOWEB_POLL_MAX_WEBHOOK_SECONDS` when the provider calls back (webhooks.py
wakes the job at once; polling is then only the fallback for a lost delivery). An
upstream's own hint (``Pending.poll_after``) wins.

A job that ends while the upstream still has it (cancelled by its owner, past its
deadline) is called off there by :func:`cancel_upstream`, run as its own task.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from generations import queue, resilience
from generations.crypto import KeyDecryptionError
from generations.failures import ErrorKind
from generations.models import Attempt, Generation, Price, Provider, ProviderKey, Route
from generations.outcomes import (
    DEADLINE_MESSAGE,
    fail,
    failed,
    fenced,
    settle_answer,
)
from generations.providers.base import Pending, ProviderError, Timeouts, UpstreamJob
from generations.routing import Choice

log = logging.getLogger(__name__)

POLL_ERRORS = 5  # polls in a row that could not ask before the request is given up
# The next poll waits a share of how long the request has been queued, or, once the
# model works on it, of how long it has been working: a request that just started is
# looked at often (it may be quick), one long in the queue rarely.
QUEUED_AGE_SHARE = 0.25
RUNNING_AGE_SHARE = 0.15
STAGE_QUEUED = "in the provider's queue"
STAGE_RUNNING = "generating at the provider"


def webhook_url(provider: Provider) -> str | None:
    """Where the provider calls back, if the admin turned webhooks on for it."""
    if not (provider.webhooks and provider.kind in Provider.WEBHOOK_KINDS):
        return None
    path = reverse("generations:webhook", args=[provider.kind, provider.webhook_token])
    return settings.NANOWEB_BASE_URL.rstrip("/") + path


def submitted(gen: Generation, choice: Choice, pending: Pending) -> float | None:
    """The upstream took the request: remember it, and come back when it may be done."""
    now = timezone.now()
    handle = {
        **pending.job.as_dict(),
        "route": choice.route.pk,
        "key": choice.key.pk,
        "price": choice.price.pk if choice.price else None,
        "submitted": now.isoformat(),
        "polls": 0,
        "poll_errors": 0,
    }
    delay = _next_poll(gen, handle, pending, choice.route.provider)
    at = now + timedelta(seconds=delay)
    saved = fenced(gen).update(
        status=Generation.QUEUED,
        lease_until=None,
        upstream_id=pending.job.id[:200],
        upstream_job=handle,
        stage=_stage(pending),
        next_attempt_at=at,
        enqueued_at=at,
    )
    if not saved:  # our lease was taken over meanwhile: the other run owns the job
        log.warning("generation %s: upstream request %s left behind", gen.pk, pending.job.id)
        return None
    log.info("generation %s: submitted upstream as %s", gen.pk, pending.job.id)
    return delay


def poll(gen: Generation) -> float | None:
    """One look at the upstream request the job is waiting on."""
    handle = gen.upstream_job
    if timezone.now() >= gen.deadline:
        fail(gen, ErrorKind.DEADLINE, DEADLINE_MESSAGE)  # fail() calls it off upstream
        return None
    choice = _choice_of(handle)
    if choice is None:
        fail(
            gen,
            ErrorKind.NO_ROUTE,
            _("The provider route this job was sent through was deleted; no image was made."),
        )
        return None
    started = time.monotonic() - _age(handle)  # the attempt began with the submit
    try:
        provider = choice.connect(Timeouts(choice.route.provider.connect_timeout, 60.0))
        answer = provider.poll(UpstreamJob.of(handle))
    except KeyDecryptionError as exc:
        err = ProviderError(
            ErrorKind.KEY_INVALID, _("A provider key is unusable."), detail=str(exc)
        )
        return _over(gen, choice, err, started)
    except ProviderError as err:
        if _asking_failed(err) and handle.get("poll_errors", 0) + 1 < POLL_ERRORS:
            errors = handle.get("poll_errors", 0) + 1
            log.info("generation %s: poll %s failed: %s", gen.pk, handle["id"], err.detail)
            delay = max(resilience.backoff_delay(errors), err.retry_after or 0.0, 1.0)
            return _poll_again(gen, {**handle, "poll_errors": errors}, delay, stage=gen.stage)
        if _asking_failed(err):  # the request is lost to us: call it off, then retry
            try:
                _call_off(choice, handle)
            except (ProviderError, KeyDecryptionError):
                log.info("could not call off upstream request %s", handle["id"], exc_info=True)
        return _over(gen, choice, err, started)
    if isinstance(answer, Pending):
        handle = {**handle, **answer.job.as_dict(), "poll_errors": 0}
        now = timezone.now().isoformat()
        if answer.started and not handle.get("running_since"):
            # It started at some point between the last look and this one.
            handle["running_since"] = handle.get("last_poll") or handle["submitted"]
            handle["seen_running"] = now
        handle["last_poll"] = now
        delay = _next_poll(gen, handle, answer, choice.route.provider)
        return _poll_again(gen, handle, delay, stage=_stage(answer))
    _learn_duration(handle)
    return settle_answer(gen, choice, answer, started)


def cancel_upstream(generation_id) -> None:
    """Call off the upstream request of a job that has ended without it, and say in
    the attempt log whether the upstream may bill it anyway."""
    gen = Generation.objects.filter(pk=generation_id).first()
    if gen is None or not gen.upstream_job or not gen.is_finished:
        return
    handle = gen.upstream_job
    cleared = Generation.objects.filter(pk=gen.pk, upstream_job__isnull=False).update(
        upstream_job=None
    )
    choice = _choice_of(handle)
    if not cleared or choice is None:
        return
    started = time.monotonic() - _age(handle)
    try:
        dropped = _call_off(choice, handle)
    except (ProviderError, KeyDecryptionError) as exc:
        dropped = False
        detail = _("Could not call off upstream request %(id)s: %(error)s") % {
            "id": handle["id"],
            "error": getattr(exc, "detail", "") or str(exc),
        }
    else:
        detail = (
            _("Upstream request %(id)s called off before it ran.")
            if dropped
            else _("Upstream request %(id)s had already started; the provider may bill it.")
        ) % {"id": handle["id"]}
    Attempt.objects.create(
        generation=gen,
        number=gen.attempts,
        route=choice.route,
        key_label=choice.key.label,
        latency_ms=int((time.monotonic() - started) * 1000),
        outcome=ErrorKind.CANCELLED,
        detail=detail[:500],
        may_have_been_billed=not dropped,
    )


def wake(provider: Provider, upstream_id: str) -> int:
    """A verified webhook says ``upstream_id`` changed: poll its job now (the poll
    fetches the result itself; the webhook's body is never trusted for it). Returns how
    many jobs were woken: 0 for a request already seen through, which is fine."""
    routes = list(provider.routes.values_list("pk", flat=True))
    now = timezone.now()
    waiting = Generation.objects.filter(
        upstream_id=upstream_id[:200],
        status=Generation.QUEUED,
        upstream_job__isnull=False,
        upstream_job__route__in=routes,
    )
    ids = list(waiting.values_list("pk", flat=True))
    if ids:
        Generation.objects.filter(pk__in=ids, status=Generation.QUEUED).update(
            next_attempt_at=now, enqueued_at=now
        )
        transaction.on_commit(lambda: queue.enqueue(ids))
    return len(ids)


# --- helpers ------------------------------------------------------------------


def _choice_of(handle: dict) -> Choice | None:
    """The route, key and price the request went out with (whatever their state now:
    the request is already paid for or running upstream, so it is seen through)."""
    route = Route.objects.select_related("provider", "model").filter(pk=handle["route"]).first()
    key = ProviderKey.objects.filter(pk=handle["key"]).first()
    if route is None or key is None:
        return None
    price = Price.objects.filter(pk=handle["price"]).first() if handle.get("price") else None
    return Choice(route, key, price, None)


def _asking_failed(err: ProviderError) -> bool:
    """The status URL could not be asked (unreachable, overloaded, throttled), as
    opposed to the upstream saying the request itself failed."""
    asking = (ErrorKind.TRANSIENT, ErrorKind.SLOW, ErrorKind.RATE_LIMITED)
    return err.kind in asking and (
        err.http_status is None or err.http_status >= 500 or err.http_status == 429
    )


def _over(gen: Generation, choice: Choice, err: ProviderError, started: float):
    """The upstream request ended without an image: forget it, then retry or fail."""
    fenced(gen).update(upstream_job=None)
    gen.upstream_job = None
    return failed(gen, choice, err, started)


def _call_off(choice: Choice, handle: dict) -> bool:
    """Ask the upstream to drop the request: True when it did before the model ran."""
    provider = choice.connect(Timeouts(choice.route.provider.connect_timeout, 30.0))
    return provider.cancel(UpstreamJob.of(handle))


def _poll_again(gen: Generation, handle: dict, delay: float, *, stage: str) -> float | None:
    now = timezone.now()
    delay = min(delay, max((gen.deadline - now).total_seconds(), 0.05))
    at = now + timedelta(seconds=delay)
    saved = fenced(gen).update(
        status=Generation.QUEUED,
        lease_until=None,
        upstream_job={**handle, "polls": handle.get("polls", 0) + 1},
        stage=stage[:40],
        next_attempt_at=at,
        enqueued_at=at,
    )
    return delay if saved else None


def _next_poll(gen: Generation, handle: dict, pending: Pending, provider: Provider) -> float:
    """When to look again (see the module): the upstream's hint; or, once the model
    works on the request, a little before requests on this route are usually done; or,
    while it waits in line, by its place in the line and how fast the line moves."""
    if pending.poll_after is not None:
        delay = pending.poll_after
    else:
        cap = (
            settings.NANOWEB_POLL_MAX_WEBHOOK_SECONDS
            if webhook_url(provider)
            else settings.NANOWEB_POLL_MAX_SECONDS
        )
        if pending.started and handle.get("running_since"):
            working = _working(handle)
            delay = RUNNING_AGE_SHARE * working
            typical = _durations.get(handle["route"])
            if typical and working < 1.5 * typical:
                left = typical - working
                soon = 2 * settings.NANOWEB_POLL_MIN_SECONDS
                delay = 0.8 * left if left > soon else settings.NANOWEB_POLL_MIN_SECONDS
            delay = min(delay, cap)
        else:
            delay = min(QUEUED_AGE_SHARE * _age(handle), cap)
            if pending.position and (rate := _finish_rate(handle["route"])):
                # About position / rate until it starts: look again halfway there.
                delay = max(delay, min(0.5 * pending.position / rate, 4 * cap))
    return min(max(delay, settings.NANOWEB_POLL_MIN_SECONDS), resilience.MAX_COUNTDOWN_SECONDS)


def _working(handle: dict) -> float:
    """How long the model has worked on it: from the middle of the gap in which it
    started (between the last look that saw it waiting and the first that saw it work)."""
    gap = _age(handle, "running_since") - _age(handle, "seen_running")
    return _age(handle, "running_since") - gap / 2


_durations: dict[int, float] = {}  # route → how long its requests work once started (EWMA)
_rates: dict[int, tuple[float, float]] = {}  # route → (when counted, finishes per second)
RATE_WINDOW_SECONDS = 60
RATE_CACHE_SECONDS = 5


def _learn_duration(handle: dict) -> None:
    """Remember how long a finished request worked once started (per process): from the
    middle of the gap in which it started to the middle of the one in which it ended
    (the last look that saw it working, and this one), so the estimate is not biased
    by how seldom it was looked at."""
    if not (handle.get("running_since") and handle.get("last_poll")):
        return
    took = _working(handle) - _age(handle, "last_poll") / 2
    before = _durations.get(handle["route"])
    _durations[handle["route"]] = took if before is None else 0.8 * before + 0.2 * took


def _finish_rate(route_id: int) -> float:
    """Requests this route saw finish per second over the last minute (an image made,
    or a failure classified), counted at most every few seconds per process."""
    now = time.monotonic()
    counted = _rates.get(route_id)
    if counted is None or now - counted[0] > RATE_CACHE_SECONDS:
        since = timezone.now() - timedelta(seconds=RATE_WINDOW_SECONDS)
        recent = Attempt.objects.filter(route_id=route_id, started__gte=since)
        seen = recent.aggregate(n=Count("pk"), oldest=Min("started"))
        # Over the part of the window that saw finishes (a route just started has not
        # seen a minute of them), at least a second.
        span = (timezone.now() - seen["oldest"]).total_seconds() if seen["n"] else 0
        counted = _rates[route_id] = (now, seen["n"] / max(span, 1.0) if seen["n"] > 1 else 0.0)
    return counted[1]


def _age(handle: dict, since: str = "submitted") -> float:
    start = datetime.fromisoformat(handle[since])
    return max((timezone.now() - start).total_seconds(), 0.0)


def _stage(pending: Pending) -> str:
    if pending.started:
        return STAGE_RUNNING
    if pending.position is not None:
        return f"{STAGE_QUEUED} (#{pending.position + 1})"[:40]
    return STAGE_QUEUED
