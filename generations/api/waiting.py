"""Submit from the API and wait for the jobs without holding a thread.

The synchronous endpoints run the same Celery jobs as the studio. While they wait,
the request is a coroutine parked on a future: one watcher task per event loop
asks the database, every ``NANOWEB_API_POLL_SECONDS``, which of *all* the awaited
jobs have finished — one query per tick however many requests are waiting. If
the client goes away the coroutine is cancelled; the jobs are already committed
and paid for, so they finish and land in the gallery regardless.
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction

from generations import jobs
from generations.api.errors import ApiError, from_submit
from generations.models import Generation, IdempotencyKey

_watchers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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


def submit(
    user,
    req: jobs.JobRequest,
    *,
    idempotency_key: str | None = None,
    params: dict[str, str] | None = None,
) -> tuple[list[Generation], bool]:
    """Admit the jobs (sync; call through ``sync_to_async``) → (jobs, created now).

    With an ``Idempotency-Key`` the first request creates the jobs and any later one
    with the same key gets the same jobs back; a unique constraint settles races.
    """
    req.source = "api"
    if not idempotency_key:
        return _submit(user, req, params), True
    key = idempotency_key.strip()[:255]
    try:
        with transaction.atomic():
            claim = IdempotencyKey.objects.create(user=user, key=key)
    except IntegrityError:
        return _replay(user, key), False
    try:
        created = _submit(user, req, params)
    except ApiError:
        claim.delete()  # nothing was made: the same key may be tried again
        raise
    IdempotencyKey.objects.filter(pk=claim.pk).update(request_id=created[0].request_id)
    return created, True


def _submit(user, req, params) -> list[Generation]:
    try:
        return jobs.submit(user, req)
    except jobs.SubmitError as exc:
        raise from_submit(exc, params) from exc


def _replay(user, key: str) -> list[Generation]:
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
        if row.request_id:
            return list(
                Generation.objects.filter(request_id=row.request_id, user=user)
                .select_related("model", "image")
                .order_by("created")
            )
        time.sleep(0.1)
    raise ApiError(
        409,
        "A request with this Idempotency-Key is still being admitted.",
        param="Idempotency-Key",
        code="conflict",
        retryable=True,
    )


def refresh(ids) -> list[Generation]:
    return list(
        Generation.objects.filter(pk__in=ids)
        .select_related("model", "image", "route")
        .order_by("created")
    )
