"""The fast path of the synchronous API: a job's first attempt runs in this web process.

A synchronous call (``/v1/images/generations`` and ``…/edits``, ``generateContent``)
holds its client until the image exists. Sending its first attempt through Celery
costs a broker message, a worker's poll of the broker and the waiter's poll of the
database — CPU on both sides and tens of milliseconds of latency for nothing, since
this process is waiting anyway. So the web process runs that attempt itself, in a
thread of a bounded pool (the attempt is the same blocking code a worker runs: the
same claim and lease with its heartbeat, the same rate-limit permit and breaker
verdict, the same settlement), while the request's coroutine waits on it.

Everything after a first attempt that did not finish the job — a retry after a
backoff, a failover, a queue-style upstream's polling — goes to the workers, as
does any job admitted when every thread here is busy. A web process that dies
mid-call leaves a running job with a lease nobody renews: the sweep hands it to a
worker within the lease time, as it would a dead worker's (its attempt's idempotency
key is kept, so an upstream that honours it does not charge twice).

The same threads run the request's other database work (admission, reading the
result back): they keep their connections open, where Django's own thread per ASGI
request opens a new one each time.

``NANOWEB_API_INLINE_THREADS`` threads per web process (0: every attempt goes to the
workers, as the studio's do). Each thread keeps its own database connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from generations import queue, runner

log = logging.getLogger(__name__)


class _Pool:
    """The process's threads for first attempts, and how many are taken."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self._executor: ThreadPoolExecutor | None = None

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` threads; how many were free."""
        size = int(settings.NANOWEB_API_INLINE_THREADS)
        with self._lock:
            if size > 0 and (self._executor is None or self._executor._max_workers != size):
                if self._executor is not None:  # resized (a test): the old threads finish
                    self._executor.shutdown(wait=False)
                self._executor = ThreadPoolExecutor(size, thread_name_prefix="api-attempt")
            got = max(min(wanted, size - self._busy), 0)
            self._busy += got
            return got

    def close(self) -> None:
        """Close each thread's database connection, then stop the threads (for a clean
        exit; the test suite calls it before it drops its database)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        threads = len(executor._threads)
        together = threading.Barrier(max(threads, 1))

        def close_own() -> None:  # each thread holds one task until all have one
            with contextlib.suppress(threading.BrokenBarrierError):
                together.wait(5)
            connection.close()

        for _ in range(threads):
            executor.submit(close_own)
        executor.shutdown(wait=True)

    def submit(self, fn, *args):
        return self._executor.submit(self._run, fn, *args)

    def _run(self, fn, *args):
        try:
            _check_connection()
            return fn(*args)
        finally:
            with self._lock:
                self._busy -= 1


_pool = _Pool()


def _check_connection() -> None:
    """A pool thread keeps its database connection from one call to the next (the pool
    is bounded, so are the connections): a connection that saw an error is checked and
    replaced if it is broken."""
    if connection.connection is not None and connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            connection.close()


async def call(fn, *args, **kwargs):
    """Run an API request's blocking database work on a pool thread, whose connection
    stays open. (Django gives each ASGI request's sync code a thread of its own, and
    with it a new database connection every time.) When every thread is busy, or the
    pool is off, it runs as Django would run it."""
    if _pool.take(1):
        return await asyncio.wrap_future(_pool.submit(functools.partial(fn, *args, **kwargs)))
    return await sync_to_async(fn)(*args, **kwargs)


def close() -> None:
    _pool.close()


def enabled() -> bool:
    return int(settings.NANOWEB_API_INLINE_THREADS) > 0


def _attempt(pk) -> None:
    try:
        runner.attempt(pk)
    except Exception:
        # The job is committed and leased: the sweep gives it to a worker once its lease
        # runs out. Nothing is lost; say why it took the slow way.
        log.exception("the first attempt of job %s failed here; a worker takes it over", pk)
        connection.close()


async def run(ids, timeout: float) -> None:
    """Run the first attempt of each job (admitted with ``run_here``) here, those with
    no free thread on the workers; return when the attempts run here are over or after
    ``timeout`` seconds (they go on regardless: the client may have gone, the job has
    not)."""
    here = _pool.take(len(ids))
    if here < len(ids):
        await asyncio.to_thread(queue.enqueue, list(ids[here:]))
    if not here:
        return
    futures = [asyncio.wrap_future(_pool.submit(_attempt, pk)) for pk in ids[:here]]
    await asyncio.wait(futures, timeout=timeout)
