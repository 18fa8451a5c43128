"""Backoff with full jitter and per-class retry budgets (DESIGN.md's upstream table)."""

from __future__ import annotations

import random

from django.conf import settings

from generations.failures import ErrorKind

# How many times each class may be retried within one job (DESIGN.md's table).
RETRY_BUDGET: dict[ErrorKind, int] = {
    ErrorKind.RATE_LIMITED: 5,
    ErrorKind.TRANSIENT: 3,
    ErrorKind.CORRUPT: 3,
    ErrorKind.SLOW: 2,
    ErrorKind.NO_IMAGE: 1,
    ErrorKind.KEY_EXHAUSTED: 5,  # moves to another key at once; bounded by the keys there are
    ErrorKind.KEY_INVALID: 5,
    ErrorKind.OUT_OF_CREDIT: 5,  # the key rests; moves to another key or route at once
    ErrorKind.REFUSED: 0,  # never retried on the route that refused; the next one goes at once
    ErrorKind.MODEL_GONE: 0,  # the route is retired; the next one goes at once
}

# Countdowns must stay well below the broker's visibility timeout (Redis: 3600 s).
MAX_COUNTDOWN_SECONDS = 900.0


def backoff_delay(
    retry_number: int,
    *,
    rng: random.Random | None = None,
    base: float | None = None,
    cap: float | None = None,
) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base·2^(n-1)))."""
    base = settings.NANOWEB_BACKOFF_BASE_SECONDS if base is None else base
    cap = settings.NANOWEB_BACKOFF_CAP_SECONDS if cap is None else cap
    ceiling = min(cap, base * 2 ** max(0, retry_number - 1))
    return (rng or random).uniform(0, ceiling)


def retry_delay(kind: ErrorKind, retry_number: int, retry_after: float | None) -> float:
    """Seconds to wait before the next attempt of a job that failed with ``kind``."""
    if kind in (
        ErrorKind.KEY_EXHAUSTED,
        ErrorKind.KEY_INVALID,
        ErrorKind.OUT_OF_CREDIT,
        ErrorKind.TRANSIENT,
        ErrorKind.REFUSED,
        ErrorKind.MODEL_GONE,
    ):
        delay = 0.0 if retry_number == 1 else backoff_delay(retry_number - 1)
    else:
        delay = backoff_delay(retry_number)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_COUNTDOWN_SECONDS)
