"""The data the resilience modules pass around, and the clock arithmetic they share.

Kept apart from the modules that act on them (``limiter``, ``breaker``, ``store``)
so that each of those imports this and none imports another's internals.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone

from accounts.periods import next_midnight

PACIFIC = ZoneInfo("America/Los_Angeles")  # Google's per-day quotas reset at Pacific midnight
MINUTE = 60.0
BUSY_RETRY = 1.0  # all concurrent slots taken: look again this soon


# --- rate limiter ---


@dataclass(frozen=True)
class Limits:
    rpm: int | None = None
    rpd: int | None = None
    concurrency: int | None = None

    @classmethod
    def of(cls, provider) -> Limits:
        return cls(provider.rpm or None, provider.rpd or None, provider.max_concurrency or None)

    @property
    def unlimited(self) -> bool:
        return not (self.rpm or self.rpd or self.concurrency)


@dataclass(frozen=True)
class Permit:
    key_id: int
    token: str
    delay: float = 0.0  # seconds until a booked slot opens (0: now)


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str  # "rpm" | "rpd" | "concurrency"


def window_seconds() -> float:
    return MINUTE + settings.NANOWEB_RPM_MARGIN_SECONDS


def day_bounds(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The current Pacific day: [start, end)."""
    now = now or timezone.now()
    start = datetime.combine(now.astimezone(PACIFIC).date(), time.min, tzinfo=PACIFIC)
    return start, next_midnight(now, zone=PACIFIC)


def new_token() -> str:
    return uuid.uuid4().hex


# --- circuit breaker ---


@dataclass(frozen=True)
class BreakerConfig:
    consecutive: int = 10
    failure_rate: float = 0.5
    min_calls: int = 5
    window: float = 60.0
    open_seconds: float = 60.0
    probe_lease: float = 30.0
    vouch: float = 10.0

    @classmethod
    def from_settings(cls) -> BreakerConfig:
        return cls(
            consecutive=settings.NANOWEB_BREAKER_CONSECUTIVE,
            failure_rate=settings.NANOWEB_BREAKER_FAILURE_RATE,
            min_calls=settings.NANOWEB_BREAKER_MIN_CALLS,
            window=settings.NANOWEB_BREAKER_WINDOW_SECONDS,
            open_seconds=settings.NANOWEB_BREAKER_OPEN_SECONDS,
            probe_lease=min(settings.NANOWEB_BREAKER_OPEN_SECONDS, 30.0),
            vouch=settings.NANOWEB_BREAKER_VOUCH_SECONDS,
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait: float = 0.0  # when not allowed: seconds until it may be
    probe: bool = False  # this call is the half-open probe
