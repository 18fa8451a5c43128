"""A circuit breaker per route, shared by every worker process and machine.

``allow(route_id)`` says whether a call may go through the route now (or how long
until it may); ``record(route_id, ok)`` feeds back how a call went. Only the
route's health counts (:data:`ROUTE_FAILURES`); the rules are in :mod:`.circuit`,
the state in :mod:`.store`.
"""

from __future__ import annotations

from generations.failures import ErrorKind
from generations.resilience.store import get_store
from generations.resilience.types import BreakerConfig, Decision

# 5xx, timeouts and damaged bodies say the route is unwell; a 429, a safety block or a
# bad request says nothing about it.
ROUTE_FAILURES = frozenset({ErrorKind.TRANSIENT, ErrorKind.SLOW, ErrorKind.CORRUPT})


def allow(route_id: int) -> Decision:
    """May a call go through this route now? (Half-open: exactly one probe may.)"""
    return get_store().breaker_allow(route_id, BreakerConfig.from_settings())


def record(route_id: int, ok: bool) -> dict:
    """The outcome of a call through the route; returns the breaker's new state."""
    return get_store().breaker_record(route_id, ok, BreakerConfig.from_settings())


def state(route_id: int) -> dict:
    return get_store().breaker_state(route_id)
