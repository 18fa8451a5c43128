"""Economy batches: a batch's rows sent through Google's Gemini Batch API at its Batch
price (half the interactive one), ready within 24 hours.

The rows are ordinary Generations, admitted and reserved at the Batch price
(``jobs.submit(economy=True)``); they wait queued with their next attempt at their
deadline, so the engine never runs them. The rows of one model go to Google as one
Batch API job, an :class:`UpstreamBatch` on one route, which a task carries through its
phases (the wire facts and their sources are in :mod:`generations.providers.gemini_batch`):

``new`` → ``submitting``: a worker claims the job (a conditional update and a lease)
  and marks it before it calls Google, under a display name of its own. A worker that
  dies in the call leaves it ``submitting``: the next one first looks the job up by
  that name among the key's batches and adopts it, so nothing is submitted (and paid
  for) twice. Requests go inline while the create call stays under
  ``NANOWEB_ECONOMY_INLINE_BYTES`` (Google's limit is 20 MB, reference images
  included), otherwise as a JSONL file through the Files API.
``waiting``: Google has it. It is looked at on Celery countdowns (from
  ``NANOWEB_ECONOMY_POLL_MIN_SECONDS``, a tenth of its age, at most
  ``NANOWEB_ECONOMY_POLL_MAX_SECONDS``); between looks no worker holds it, and a look
  the broker lost is sent again by :func:`reconcile` (beat, every minute).
``applying``: it finished. Each row's answer is found by its key (by position only
  where Google promises the order: inline answers that carry no keys) and goes the
  interactive way: :func:`gemini.parse_response`, then the image stored and the row
  settled at the Batch price by ``outcomes.succeed``, or the row failed and refunded by
  ``outcomes.fail`` with the usual failure vocabulary. Storing is idempotent (a row is
  finished once), so a worker that dies here just applies the rest again.
``finished``: every row has an outcome. A failed job refunds its rows; a cancelled one
  refunds those not finished; an expired one (Google gives up after 48 hours) refunds
  them as "timed out" and the batch page offers to run them now at the normal price —
  never automatically.

Cancel (``batches.cancel``) refunds the rows at once and asks Google to cancel the job.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations import engine, images, leases, pricing, queue, resilience, routing
from generations.crypto import KeyDecryptionError
from generations.failures import OK, ErrorKind
from generations.models import Batch, Generation, ModelSpec
from generations.models.jobs import UpstreamBatch
from generations.outcomes import fail, record, succeed
from generations.providers import gemini_batch
from generations.providers.base import ImageResult, ProviderError, Timeouts
from generations.routing import Choice

log = logging.getLogger(__name__)

SUBMIT_TRIES = 5  # failed submits (Google unreachable, overloaded) before the rows are refunded
STORE_TRIES = 3  # rounds of storing results that could not be stored before those rows fail
POLL_ERRORS = 30  # looks in a row that could not ask before the job is given up
DEADLINE_MARGIN_SECONDS = 600  # the job is called off this long before its rows' deadline
AGE_SHARE = 0.1  # the next look waits a tenth of how long Google has had the job
STAGE_WAITING = "waiting at Google (economy)"


def unavailable(models: list[ModelSpec]) -> str:
    """Why these models cannot go in an economy batch ("" when they can)."""
    missing = [m for m in models if not routing.batch_routes(m)]
    if not missing:
        return ""
    return _(
        "Economy needs a Gemini Batch API route for every model; %(models)s has none "
        "(an admin adds a Batch price to a Gemini route)."
    ) % {"models": ", ".join(sorted({m.label for m in missing}))}


def plan_upstream(batch: Batch, rows: list[Generation]) -> list[UpstreamBatch]:
    """One Batch API job per model (and so per route) for the rows just admitted, in
    the caller's transaction; they are sent on commit."""
    by_model: dict[int, list[Generation]] = {}
    for gen in rows:
        by_model.setdefault(gen.model_id, []).append(gen)
    made = []
    for gens in by_model.values():
        routes = routing.batch_routes(gens[0].model)
        upstream = UpstreamBatch.objects.create(
            batch=batch,
            route=routes[0] if routes else None,
            display_name=f"nanoweb-{uuid.uuid4().hex}",
            next_poll_at=timezone.now(),
        )
        Generation.objects.filter(pk__in=[g.pk for g in gens]).update(upstream_batch=upstream)
        made.append(upstream)
    ids = [u.pk for u in made]
    transaction.on_commit(lambda: queue.run_economy_batch(ids))
    return made


# --- the task's body ---------------------------------------------------------------


def run(upstream_batch_id) -> float | None:
    """One step of one Batch API job; seconds until the next, or None when finished."""
    upstream = _claim(upstream_batch_id)
    if upstream is None:
        return None
    try:
        if upstream.phase in (UpstreamBatch.NEW, UpstreamBatch.SUBMITTING):
            delay = _submit(upstream)
        else:
            delay = _look(upstream)
    except Exception:
        _release(upstream, resilience.backoff_delay(upstream.tries + 1))
        raise
    if delay is not None:
        _release(upstream, delay)
    return delay


def _claim(pk) -> UpstreamBatch | None:
    now = timezone.now()
    lease = now + timedelta(seconds=max(leases.lease_seconds(), 60))
    claimable = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    won = (
        UpstreamBatch.objects.filter(claimable, pk=pk, phase__in=UpstreamBatch.ACTIVE)
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now) | Q(cancel_requested=True))
        .update(lease_until=lease)
    )
    if not won:
        return None
    return UpstreamBatch.objects.select_related("route__provider", "key", "price", "batch").get(
        pk=pk
    )


def _release(upstream: UpstreamBatch, delay: float) -> None:
    at = timezone.now() + timedelta(seconds=delay)
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        lease_until=None, next_poll_at=at, enqueued_at=at
    )


def _rows(upstream: UpstreamBatch):
    return Generation.objects.filter(
        upstream_batch=upstream, status=Generation.QUEUED
    ).select_related("model", "user")


def _client(upstream: UpstreamBatch) -> gemini_batch.GeminiBatchClient:
    provider = upstream.route.provider
    timeouts = Timeouts(provider.connect_timeout, max(provider.read_timeout, 120.0))
    return gemini_batch.GeminiBatchClient(provider.base_url, upstream.key.get_key(), timeouts)


def _finish(upstream: UpstreamBatch, **fields) -> None:
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        phase=UpstreamBatch.FINISHED, finished=timezone.now(), lease_until=None, **fields
    )


def _fail_rows(upstream: UpstreamBatch, kind: ErrorKind, message: str) -> int:
    return sum(fail(gen, kind, message) for gen in _rows(upstream))


def _submit(upstream: UpstreamBatch) -> float | None:
    if upstream.phase == UpstreamBatch.SUBMITTING and upstream.key_id and upstream.route_id:
        adopted = _adopt(upstream)  # a worker died in the create call: did Google get it?
        if adopted is not None:
            return adopted
    rows = list(_rows(upstream).order_by("created", "pk"))
    if not rows:
        _finish(upstream)
        return None
    choice = _choose(upstream)
    if choice is None:
        _fail_rows(
            upstream,
            ErrorKind.NO_ROUTE,
            _("No Gemini Batch API route with a Batch price and a usable key is left."),
        )
        _finish(upstream, error="no route")
        return None
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        phase=UpstreamBatch.SUBMITTING, route=choice.route, key=choice.key, price=choice.price
    )
    upstream.route, upstream.key, upstream.price = choice.route, choice.key, choice.price
    try:
        requests = [
            gemini_batch.BatchRow(str(gen.pk), engine.build_request(gen, choice.route))
            for gen in rows
        ]
        status, file_name = _client(upstream).create(
            choice.route.upstream_model,
            upstream.display_name,
            requests,
            inline_limit=settings.NANOWEB_ECONOMY_INLINE_BYTES,
        )
    except (ProviderError, KeyDecryptionError) as exc:
        return _not_submitted(upstream, exc)
    now = timezone.now()
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        phase=UpstreamBatch.WAITING,
        name=status.name[:200],
        state=status.state,
        input_file=file_name[:200],
        submitted=now,
        error="",
    )
    Generation.objects.filter(pk__in=[g.pk for g in rows], status=Generation.QUEUED).update(
        attempts=F("attempts") + 1, stage=STAGE_WAITING
    )
    log.info("economy batch %s: %s rows sent as %s", upstream.batch_id, len(rows), status.name)
    return settings.NANOWEB_ECONOMY_POLL_MIN_SECONDS


def _adopt(upstream: UpstreamBatch) -> float | None:
    """The job a dead worker submitted, if Google has it (found by its display name)."""
    try:
        found = _client(upstream).find(upstream.display_name)
    except (ProviderError, KeyDecryptionError) as exc:
        log.info("economy batch %s: could not look for %s: %s", upstream.pk, upstream, exc)
        return resilience.backoff_delay(upstream.tries + 1)
    if found is None:
        return None
    now = timezone.now()
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        phase=UpstreamBatch.WAITING, name=found.name[:200], state=found.state, submitted=now
    )
    _rows(upstream).filter(attempts=0).update(attempts=1, stage=STAGE_WAITING)
    log.warning("economy batch %s: adopted %s after a lost submit", upstream.pk, found.name)
    return settings.NANOWEB_ECONOMY_POLL_MIN_SECONDS


def _choose(upstream: UpstreamBatch) -> Choice | None:
    """The route chosen at admission if it still serves, else the next that does, with
    its least recently used key and its Batch price in force."""
    model = upstream.route.model if upstream.route else _rows(upstream).first().model
    routes = routing.batch_routes(model)
    routes.sort(key=lambda r: r.pk != upstream.route_id)
    for route in routes:
        key = route.provider.keys.usable().order_by(F("last_used").asc(nulls_first=True)).first()
        price = pricing.batch_price(route)
        if key is not None and price is not None:
            return Choice(route, key, price, None)
    return None


def _not_submitted(upstream: UpstreamBatch, exc: Exception) -> float | None:
    """A create call that failed: try again (looking first, in case it got through),
    or refund the rows when it cannot succeed."""
    err = (
        exc
        if isinstance(exc, ProviderError)
        else ProviderError(ErrorKind.KEY_INVALID, _("A provider key is unusable."), detail=str(exc))
    )
    tries = upstream.tries + 1
    UpstreamBatch.objects.filter(pk=upstream.pk).update(tries=tries, error=err.detail[:500])
    transient = err.kind in (ErrorKind.TRANSIENT, ErrorKind.SLOW, ErrorKind.RATE_LIMITED)
    if transient and tries < SUBMIT_TRIES:
        log.info("economy batch %s: submit failed (%s), retrying", upstream.pk, err.detail)
        return max(resilience.backoff_delay(tries), err.retry_after or 0.0)
    _fail_rows(upstream, err.kind, err.message)
    _finish(upstream, error=(err.detail or err.message)[:500])
    return None


def _look(upstream: UpstreamBatch) -> float | None:
    client = _client(upstream)
    if upstream.cancel_requested and upstream.phase == UpstreamBatch.WAITING:
        _cancel_at_google(upstream, client)
    try:
        status = client.get(upstream.name)
    except ProviderError as err:
        return _look_failed(upstream, err)
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        state=status.state, stats=status.stats, polls=F("polls") + 1, poll_errors=0
    )
    if not status.finished:
        # Before the rows' own deadline (from admission), when the reconciler would
        # refund them without calling the job off at Google.
        cutoff = upstream.created + timedelta(
            seconds=settings.NANOWEB_ECONOMY_DEADLINE_SECONDS - DEADLINE_MARGIN_SECONDS
        )
        if timezone.now() >= cutoff:
            _cancel_at_google(upstream, client)
            _fail_rows(upstream, ErrorKind.DEADLINE, str(EXPIRED_MESSAGE))
            _finish(upstream, error="past nanoweb's deadline")
            return None
        age = (timezone.now() - upstream.submitted).total_seconds()
        low, high = (
            settings.NANOWEB_ECONOMY_POLL_MIN_SECONDS,
            settings.NANOWEB_ECONOMY_POLL_MAX_SECONDS,
        )
        return min(max(AGE_SHARE * age, low), high, resilience.MAX_COUNTDOWN_SECONDS)
    return _apply(upstream, client, status)


def _look_failed(upstream: UpstreamBatch, err: ProviderError) -> float | None:
    errors = upstream.poll_errors + 1
    UpstreamBatch.objects.filter(pk=upstream.pk).update(
        poll_errors=errors, error=(err.detail or err.message)[:500]
    )
    asking = err.kind in (ErrorKind.TRANSIENT, ErrorKind.SLOW, ErrorKind.RATE_LIMITED)
    if asking or errors < POLL_ERRORS:  # Google has the job: keep asking while it may answer
        delay = resilience.backoff_delay(errors)
        return min(max(delay, err.retry_after or 0.0), settings.NANOWEB_ECONOMY_POLL_MAX_SECONDS)
    _fail_rows(upstream, err.kind, _("The provider's batch could not be found any more; refunded."))
    _finish(upstream, error=(err.detail or err.message)[:500])
    return None


def _cancel_at_google(upstream: UpstreamBatch, client) -> None:
    try:
        client.cancel(upstream.name)
    except ProviderError as err:
        log.info("economy batch %s: cancel failed: %s", upstream.pk, err.detail)


EXPIRED_MESSAGE = gettext_lazy(
    "Google did not make this image within 48 hours, so the economy batch expired; the "
    "reservation was released. You can run the rest now at the normal price."
)
FAILED_MESSAGE = gettext_lazy("Google's batch failed: %(reason)s The reservation was released.")
CANCELLED_MESSAGE = gettext_lazy("Cancelled before it was made.")


def _apply(upstream: UpstreamBatch, client, status) -> float | None:
    """The job finished: give every row its outcome."""
    UpstreamBatch.objects.filter(pk=upstream.pk).update(phase=UpstreamBatch.APPLYING)
    rows = list(_rows(upstream))
    if status.state == gemini_batch.EXPIRED:
        for gen in rows:
            fail(gen, ErrorKind.DEADLINE, str(EXPIRED_MESSAGE))
        _finish(upstream)
        return None
    if status.state == gemini_batch.FAILED:
        reason = status.error or _("no reason given.")
        for gen in rows:
            fail(gen, ErrorKind.TRANSIENT, FAILED_MESSAGE % {"reason": reason})
        _finish(upstream, error=status.error)
        return None
    try:
        lines = client.download(status.responses_file) if status.responses_file else b""
    except ProviderError as err:
        return _look_failed(upstream, err)
    found = gemini_batch.results_by_key(status, [str(g.pk) for g in rows], lines)
    choice = Choice(upstream.route, upstream.key, upstream.price, None)
    unstored = 0
    for gen in rows:
        entry = found.get(str(gen.pk))
        if entry is None and status.state == gemini_batch.CANCELLED:
            fail(gen, ErrorKind.CANCELLED, str(CANCELLED_MESSAGE))
            continue
        unstored += not apply_row(upstream, gen, choice, gemini_batch.row_outcome(entry))
    if unstored and upstream.tries + 1 < STORE_TRIES:
        UpstreamBatch.objects.filter(pk=upstream.pk).update(tries=F("tries") + 1)
        return resilience.backoff_delay(upstream.tries + 1)
    for gen in _rows(upstream):  # could not be stored, even after retries
        fail(gen, ErrorKind.NOT_SAVED, _("The image arrived but could not be stored."))
    _finish(upstream)
    return None


def apply_row(upstream: UpstreamBatch, gen: Generation, choice: Choice, outcome) -> bool:
    """One row's answer: the image stored and settled at the Batch price, or the row
    failed and refunded. False only when the image could not be stored (try again)."""
    started = time.monotonic()
    if isinstance(outcome, ImageResult):
        try:
            clean = images.clean_image(
                outcome.images[0].data, name="generated image", thumbnail=True
            )
        except images.ImageRejected as exc:
            outcome = ProviderError(
                ErrorKind.CORRUPT,
                _("The provider sent back a damaged image."),
                detail=exc.message,
                may_have_been_billed=True,
            )
    if isinstance(outcome, ProviderError):
        record(
            gen,
            choice,
            started,
            outcome=outcome.kind,
            http_status=outcome.http_status,
            detail=outcome.detail or outcome.message,
            billed=outcome.may_have_been_billed,
        )
        fail(gen, outcome.kind, outcome.message)
        return True
    fence = Generation.objects.filter(
        pk=gen.pk, status=Generation.QUEUED, upstream_batch=upstream, attempts=gen.attempts
    )
    try:
        won = succeed(gen, choice, outcome, clean, clean.thumbnail, fence=fence)
    except Exception:  # our disk or database: the answer stays at Google for the next round
        log.exception("economy row %s: the image could not be stored", gen.pk)
        return False
    if won:
        record(gen, choice, started, outcome=OK, http_status=200)
    return True


# --- cancel, reconcile, the page ----------------------------------------------------


def request_cancel(batch: Batch) -> list[int]:
    """Ask Google to cancel the batch's jobs that are still running (on commit); the
    caller refunds the rows."""
    active = UpstreamBatch.objects.filter(batch=batch, phase__in=UpstreamBatch.ACTIVE)
    ids = list(active.values_list("pk", flat=True))
    active.update(cancel_requested=True, next_poll_at=timezone.now())
    if ids:
        transaction.on_commit(lambda: queue.run_economy_batch(ids))
    return ids


def reconcile(now=None) -> int:
    """Beat, every minute: a job whose next step the broker lost (a worker killed with
    the countdown in its hands) is sent again; one whose worker died mid-step is taken
    over when its lease runs out."""
    now = now or timezone.now()
    late = timedelta(seconds=settings.NANOWEB_REQUEUE_AFTER_SECONDS)
    lost = (
        UpstreamBatch.objects.filter(phase__in=UpstreamBatch.ACTIVE)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now - late))
        .filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - late))
    )
    ids = list(lost.values_list("pk", flat=True)[:200])
    if ids:
        UpstreamBatch.objects.filter(pk__in=ids).update(enqueued_at=now)
        transaction.on_commit(lambda: queue.run_economy_batch(ids))
    return len(ids)
