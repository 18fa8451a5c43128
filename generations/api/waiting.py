"""Submit from the API and wait for the jobs without holding a thread.

The synchronous endpoints run the same jobs as the studio. Their first attempts run
in this process (:mod:`generations.api.inline`); whatever those leave unfinished —
retries, failovers, jobs that found no free thread — runs on the Celery workers.
While it waits, the request is a coroutine parked on a future: one watcher task per event loop
asks the database, every ``NANOWEB_API_POLL_SECONDS``, which of *all* the awaited
jobs have finished — one query per tick however many requests are waiting. If
the client goes away the coroutine is cancelled; the jobs are already committed
and paid for, so they finish and land in the gallery regardless.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from generations import jobs
from generations.api import inline
from generations.api.errors import ApiError, from_submit
from generations.models import Generation, IdempotencyKey

_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# A claim on an Idempotency-Key still without jobs after this long belongs to a request
# that died while admitting them: admission takes well under a second, storing the
# largest reference images a few seconds.
ABANDONED_CLAIM = dt.timedelta(minutes=2)


class _Watcher:
    def __init__(self) -> None:
        self.waiting: dict[uuid.UUID, list[asyncio.Future]] = {}
        self.task: asyncio.Task | None = None

    def watch(self, ids: list[uuid.UUID]) -> list[asyncio.Future]:
        loop = asyncio.get_running_loop()
        futures = []
        for pk in ids:
            future = loop.create_future()
            self.waiting.setdefault(pk, []).append(future)
            futures.append(future)
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())
        return futures

    async def _run(self) -> None:
        while self.waiting:
            await asyncio.sleep(settings.NANOWEB_API_POLL_SECONDS)
            for pk, futures in list(self.waiting.items()):
                if all(f.done() for f in futures):  # every waiter gave up
                    self.waiting.pop(pk, None)
            if not self.waiting:
                break
            try:
                done = await sync_to_async(_finished, thread_sensitive=False)(list(self.waiting))
            except Exception:  # a database hiccup: keep waiting, try again next tick
                continue
            for pk in done:
                for future in self.waiting.pop(pk, []):
                    if not future.done():
                        future.set_result(pk)


def _finished(ids) -> list[uuid.UUID]:
    """Runs in the event loop's executor threads, which keep their connection between
    ticks (reconnecting after an error) instead of opening one per tick."""
    try:
        return list(
            Generation.objects.filter(pk__in=ids, status__in=Generation.FINISHED).values_list(
                "pk", flat=True
            )
        )
    except DatabaseError:
        connection.close()
        raise


async def wait_for(ids: list[uuid.UUID], timeout: float | None = None) -> bool:
    """True when every job finished within ``timeout`` seconds (default: the API wait)."""
    if not ids:
        return True
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(loop)
    if watcher is None:
        watcher = _watchers[loop] = _Watcher()
    futures = watcher.watch(ids)
    timeout = settings.NANOWEB_API_WAIT_SECONDS if timeout is None else timeout
    try:
        await asyncio.wait_for(asyncio.gather(*futures), timeout)
    except TimeoutError:
        for future in futures:
            future.cancel()
        return False
    return True


async def finish(gens: list[Generation], run_here: bool) -> tuple[bool, list[Generation]]:
    """Run the first attempts here (``run_here``: admitted for it by :func:`submit`),
    then wait for what is left → (every job finished in time, the jobs as they are now).
    The wait, ``NANOWEB_API_WAIT_SECONDS``, counts from here."""
    ids = [g.pk for g in gens]
    deadline = time.monotonic() + settings.NANOWEB_API_WAIT_SECONDS
    if run_here:
        await inline.run(ids, settings.NANOWEB_API_WAIT_SECONDS)
        gens = await inline.call(refresh, ids)
        left = [g.pk for g in gens if g.status not in Generation.FINISHED]
        if not left:
            return True, gens
    else:
        left = ids
    done = await wait_for(left, max(deadline - time.monotonic(), 0.0))
    return done, await inline.call(refresh, ids)


def submit(
    user,
    req: jobs.JobRequest,
    *,
    idempotency_key: str | None = None,
    params: dict[str, str] | None = None,
    run_here: bool = False,
) -> tuple[list[Generation], bool]:
    """Admit the jobs (sync; call through ``sync_to_async``) → (jobs, to run here).

    With an ``Idempotency-Key`` the first request creates the jobs and any later one
    with the same key gets the same jobs back — after a dropped connection or a web
    restart too, since both live in the database; a unique constraint settles races.
    The same key with a different request is refused (422), as the IETF draft says.

    ``run_here`` (a synchronous endpoint, the fast path on): jobs made now are admitted
    for :func:`finish` to run their first attempts here, and the second value says so;
    a replay's jobs belong to the request that made them.
    """
    req.source = "api"
    if not idempotency_key:
        return _submit(user, req, params, run_here), run_here
    key = idempotency_key.strip()[:255]
    claim = _claim(user, key)
    if claim is None:
        return _replay(user, key, req, params), False
    try:
        created = _submit(user, req, params, run_here)
    except ApiError:
        claim.delete()  # nothing was made: the same key may be tried again
        raise
    IdempotencyKey.objects.filter(pk=claim.pk).update(request_id=created[0].request_id)
    return created, run_here


def _claim(user, key: str) -> IdempotencyKey | None:
    """The new claim on ``key``, or None when an earlier request holds it."""
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key)
    except IntegrityError:
        return None


def _submit(user, req, params, run_here: bool) -> list[Generation]:
    try:
        return jobs.submit(user, req, run_here=run_here)
    except jobs.SubmitError as exc:
        raise from_submit(exc, params) from exc


def _replay(user, key: str, req: jobs.JobRequest, params) -> list[Generation]:
    for _ in range(50):  # the first request may still be admitting its jobs
        row = IdempotencyKey.objects.filter(user=user, key=key).first()
        if row is None:
            raise ApiError(
                409,
                "A request with this Idempotency-Key failed a moment ago; send it again.",
                param="Idempotency-Key",
                code="conflict",
                retryable=True,
            )
        if row.request_id is None and row.created < timezone.now() - ABANDONED_CLAIM:
            row.request_id = _recover(user, row, req, params)
        if row.request_id:
            gens = list(
                Generation.objects.filter(request_id=row.request_id, user=user)
                .select_related("model", "image")
                .order_by("created")
            )
            _refuse_another_request(gens, req)
            return gens
        time.sleep(0.1)
    raise ApiError(
        409,
        "A request with this Idempotency-Key is still being admitted.",
        param="Idempotency-Key",
        code="conflict",
        retryable=True,
    )


def _recover(user, row: IdempotencyKey, req: jobs.JobRequest, params):
    """A claim whose request died before it recorded its jobs (a web restart mid-admission).
    Its jobs, when they were committed, are this person's API jobs with the request's
    fingerprint made since the claim: the claim gets them. Without any, nothing was
    charged and this request takes the claim over and admits its own."""
    made = (
        Generation.objects.filter(
            user=user, source="api", fingerprint=jobs.fingerprint(req), created__gte=row.created
        )
        .order_by("created")
        .values_list("request_id", flat=True)
        .first()
    )
    taken = IdempotencyKey.objects.filter(pk=row.pk, request_id__isnull=True)
    if made is not None:
        taken.update(request_id=made)
        return IdempotencyKey.objects.get(pk=row.pk).request_id
    if taken.filter(created=row.created).update(created=timezone.now()) != 1:
        return None  # another retry took it over first: wait for its jobs
    try:
        created = _submit(user, req, params, run_here=False)  # a replay: the workers run it
    except ApiError:
        IdempotencyKey.objects.filter(pk=row.pk).delete()
        raise
    IdempotencyKey.objects.filter(pk=row.pk).update(request_id=created[0].request_id)
    return created[0].request_id


def _refuse_another_request(gens: list[Generation], req: jobs.JobRequest) -> None:
    if not gens:  # its account's jobs were removed since (an admin's clean-up)
        raise ApiError(
            409,
            "The request this Idempotency-Key made no longer exists; send a new key.",
            param="Idempotency-Key",
            code="conflict",
        )
    if len(gens) != req.count or gens[0].fingerprint != jobs.fingerprint(req):
        raise ApiError(
            422,
            "This Idempotency-Key was already used for a different request (another "
            "prompt, model, size, images or n). Send a new key with a new request.",
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )


def refresh(ids) -> list[Generation]:
    return list(
        Generation.objects.filter(pk__in=ids)
        .select_related("model", "image", "route")
        .order_by("created")
    )
