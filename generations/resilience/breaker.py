"""A circuit breaker per route, shared by every worker process and machine.

``allow(route_id, job)`` says whether a call for a job may go through the route now
(or how long until it may); ``record(route_id, ok, job)`` feeds back how a call went.
Only the route's health counts (:data:`ROUTE_FAILURES`), and each job once (a job that
fails while others succeed fails alone); the rules are in :mod:`.circuit`, the state in
:mod:`.store`.
"""

from __future__ import annotations

import uuid

from generations.failures import ErrorKind
from generations.resilience.store import get_store
from generations.resilience.types import BreakerConfig, Decision

# 5xx, timeouts and damaged bodies say the route is unwell; a 429, a safety block or a
# bad request says nothing about it.
ROUTE_FAILURES = frozenset({ErrorKind.TRANSIENT, ErrorKind.SLOW, ErrorKind.CORRUPT})


def job_tag(job_id) -> str:
    """How the breaker knows a job: short, so its state stays small."""
    return uuid.UUID(str(job_id)).hex[:12]


def allow(route_id: int, job_id=None) -> Decision:
    """May a call for this job go through this route now? (Half-open: exactly one probe
    may, and not one of the jobs that opened it.)"""
    job = job_tag(job_id) if job_id else None
    return get_store().breaker_allow(route_id, BreakerConfig.from_settings(), job)


def record(route_id: int, ok: bool, job_id=None) -> dict:
    """The outcome of a call for this job through the route; returns the new state."""
    job = job_tag(job_id) if job_id else None
    return get_store().breaker_record(route_id, ok, BreakerConfig.from_settings(), job)


def state(route_id: int) -> dict:
    return get_store().breaker_state(route_id)
