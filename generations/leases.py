"""A running job's lease, kept alive by a heartbeat while its worker lives.

A worker claims a job with a short lease (:setting:`NANOWEB_JOB_LEASE_SECONDS`); while
the attempt runs — the upstream call, the poll, storing the image — a heartbeat renews
it every :setting:`NANOWEB_JOB_HEARTBEAT_SECONDS` (and the rate-limit permit the call
holds, so a concurrency slot lives exactly as long as the call). A worker that dies
stops renewing, the lease runs out within the lease time, and the sweep
(``engine.sweep``) gives the job to another worker. A long call therefore never needs
a long lease.

One heartbeat thread per process renews every job that process holds, one fenced
UPDATE per job per interval (never per poll, never per byte): the UPDATE matches only
while the lease is the one this run wrote (``lease_until`` equal to it), so a heartbeat
never extends a lease the job lost to another worker. A job that ends before its first
interval costs no renewal at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from generations.models import Generation
from generations.resilience import limiter
from generations.resilience.types import Permit

log = logging.getLogger(__name__)


def lease_seconds() -> float:
    return float(settings.NANOWEB_JOB_LEASE_SECONDS)


def heartbeat_seconds() -> float:
    """At least three beats per lease: a lease survives two missed ones."""
    return min(float(settings.NANOWEB_JOB_HEARTBEAT_SECONDS), lease_seconds() / 3)


@dataclass
class Held:
    """One job this process is working on, and the lease it last wrote."""

    pk: object
    attempts: int
    until: object  # the lease_until this run wrote (the fence)
    due: float  # time.monotonic() of the next renewal
    permits: list[Permit] = field(default_factory=list)
    lost: bool = False

    def keep(self, permit: Permit | None) -> None:
        """Renew this rate-limit permit with the lease from now on."""
        if permit is not None and permit.token:
            self.permits.append(permit)


class Heartbeat:
    """The process's heartbeat thread and the jobs it keeps (started on first use, and
    again in a forked child, where threads do not survive)."""

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None

    def hold(self, gen: Generation) -> Held:
        held = Held(gen.pk, gen.attempts, gen.lease_until, time.monotonic() + heartbeat_seconds())
        with self._lock:
            self._start()
            self._held[id(held)] = held
        self._wake.set()
        return held

    def drop(self, held: Held) -> None:
        with self._lock:
            self._held.pop(id(held), None)

    def _start(self) -> None:
        if self._pid == os.getpid() and self._thread and self._thread.is_alive():
            return
        if self._pid != os.getpid():
            self._held = {}  # a forked child holds none of its parent's jobs
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._run, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.clear()  # before looking: a job held from now on wakes the wait
            with self._lock:
                held = list(self._held.values())
            now = time.monotonic()
            for h in held:
                if h.due <= now:
                    self._beat(h)
            with self._lock:
                dues = [h.due for h in self._held.values()]
            if not dues:
                connection.close()  # idle: hold no database connection until the next job
            self._wake.wait(max(min(dues) - time.monotonic(), 0.05) if dues else None)

    def _beat(self, h: Held) -> None:
        h.due = time.monotonic() + heartbeat_seconds()
        until = timezone.now() + timedelta(seconds=lease_seconds())
        try:
            renewed = Generation.objects.filter(
                pk=h.pk, status=Generation.RUNNING, attempts=h.attempts, lease_until=h.until
            ).update(lease_until=until)
            for permit in h.permits:
                limiter.renew(permit, lease_seconds())
        except Exception:  # the next beat tries again; the lease has room for two misses
            log.warning("could not renew the lease of job %s", h.pk, exc_info=True)
            connection.close()
            return
        if renewed:
            h.until = until
        else:  # finished, requeued, or taken over after the lease ran out: stop here
            h.lost = True
            self.drop(h)


_heartbeat = Heartbeat()


@contextmanager
def kept(gen: Generation):
    """Renew ``gen``'s lease while the block runs (the caller claimed it)."""
    held = _heartbeat.hold(gen)
    try:
        yield held
    finally:
        _heartbeat.drop(held)
