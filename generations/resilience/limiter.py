"""A rate limiter per provider key: requests per minute, per day, and at once.

A call needs a permit. ``acquire`` grants one — counted in the key's sliding
60-second window, in its day (days end at midnight Pacific, when Google resets
its quotas) and as one concurrent call until ``release`` or the lease runs out —
or says how many seconds until one frees up.

Permits for the per-minute limit can be booked ahead: with ``ahead`` > 0 a full
window books the earliest slot that keeps every 60-second window within the
limit, and the permit says how long to wait for it (``delay``). Bookings are
appended in time order, so waiting jobs line up first come, first served, each
waking exactly when its slot opens — no herd of jobs retrying the same freed
slot. The job waits without using up an attempt. Counting is exact across every
worker process and machine: the store grants atomically (see :mod:`.store`).
"""

from __future__ import annotations

from django.conf import settings

from generations.resilience.store import get_store
from generations.resilience.types import Limits, Permit, Wait


def acquire(
    key_id: int, limits: Limits, lease: float | None = None, *, ahead: float = 0.0
) -> Permit | Wait:
    """A permit now, or booked up to ``ahead`` seconds ahead, or how long to wait."""
    if limits.unlimited:
        return Permit(key_id, "")
    if limits.concurrency:
        ahead = 0.0  # a booked slot would hold a concurrent-call slot while it waits
    lease = lease or settings.NANOWEB_JOB_LEASE_SECONDS
    return get_store().acquire(key_id, limits, lease, ahead=ahead)


def release(permit: Permit) -> None:
    if permit.token:
        get_store().release(permit)


def renew(permit: Permit, lease: float) -> None:
    """Keep a call's concurrency slot for ``lease`` seconds more (the job's heartbeat),
    so a slot lives as long as the call and a dead worker's frees itself soon."""
    if permit.token:
        get_store().renew(permit, lease)


def usage(key_id: int) -> dict[str, int]:
    """Calls in the current minute window, today (Pacific), and in flight now."""
    return get_store().key_usage(key_id)
