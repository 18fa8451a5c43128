"""The circuit breaker's transitions: closed → open → half-open → closed.

Closed, every call goes through. The breaker opens after ``consecutive``
failures in a row, or when at least ``min_calls`` calls in the last ``window``
seconds failed at ``failure_rate`` or more. Open, no call goes through for
``open_seconds``. Then it is half-open: exactly one probe goes through (others
wait); a success closes it, a failure opens it again. A probe whose worker died
stops blocking others after ``probe_lease`` seconds.

Only the route's health counts: 5xx, timeouts and damaged bodies are failures;
a 429, a safety block or a bad request says nothing about the route and is not
recorded. The transitions are pure functions of (state, event, now), so the
database and Redis stores apply the very same rules (:mod:`.breaker` is the face the
engine calls).
"""

from __future__ import annotations

from generations.resilience.types import BreakerConfig, Decision

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


def fresh() -> dict:
    return {
        "state": CLOSED,
        "consecutive": 0,
        "window_start": 0.0,
        "calls": 0,
        "failures": 0,
        "open_until": 0.0,
        "probe_until": 0.0,
        "opened_count": 0,
    }


def allow(state: dict, now: float, cfg: BreakerConfig) -> tuple[dict, Decision]:
    """May a call go through now? Returns the new state and the decision."""
    s = {**fresh(), **state}
    if s["state"] == CLOSED:
        return s, Decision(True)
    if s["state"] == OPEN and now < s["open_until"]:
        return s, Decision(False, wait=s["open_until"] - now)
    # Open and cooled down, or half-open: one probe at a time.
    if s["state"] == HALF_OPEN and now < s["probe_until"]:
        return s, Decision(False, wait=min(s["probe_until"] - now, 5.0))
    s.update(state=HALF_OPEN, probe_until=now + cfg.probe_lease)
    return s, Decision(True, probe=True)


def record(state: dict, ok: bool, now: float, cfg: BreakerConfig) -> dict:
    """The outcome of a call through the route."""
    s = {**fresh(), **state}
    if s["state"] == HALF_OPEN:
        if ok:
            return {**fresh(), "opened_count": s["opened_count"]}
        return _open(s, now, cfg)
    if now - s["window_start"] >= cfg.window:
        s.update(window_start=now, calls=0, failures=0)
    s["calls"] += 1
    if ok:
        s["consecutive"] = 0
        return s
    s["failures"] += 1
    s["consecutive"] += 1
    if s["state"] == CLOSED and (
        s["consecutive"] >= cfg.consecutive
        or (s["calls"] >= cfg.min_calls and s["failures"] >= cfg.failure_rate * s["calls"])
    ):
        return _open(s, now, cfg)
    return s


def _open(s: dict, now: float, cfg: BreakerConfig) -> dict:
    return {
        **s,
        "state": OPEN,
        "open_until": now + cfg.open_seconds,
        "probe_until": 0.0,
        "consecutive": 0,
        "window_start": now,
        "calls": 0,
        "failures": 0,
        "opened_count": s["opened_count"] + 1,
    }


def describe(state: dict, now: float) -> str:
    """For admins: "closed", "open for 42 s more", "half-open (probing)"."""
    s = {**fresh(), **state}
    if s["state"] == OPEN and now < s["open_until"]:
        return f"open for {s['open_until'] - now:.0f} s more"
    if s["state"] in (OPEN, HALF_OPEN):
        return "half-open (probing)" if now < s["probe_until"] else "half-open"
    return "closed"
