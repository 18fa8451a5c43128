"""Where breaker and rate-limit state lives, shared by every worker process and machine.

* :class:`DatabaseStore` — the embedded default. A grant is a row in
  ``KeyPermit`` written in a transaction that first locks the key's row
  (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's IMMEDIATE transactions
  serialise writers), so counting and granting are one atomic step.
* :class:`RedisStore` — production. A grant is one Lua script over a sorted set
  (the sliding window), a counter (the day) and a sorted set of leases (calls in
  flight), timed by the Redis server's clock. Breaker state is a hash updated
  under WATCH/MULTI with the same pure transitions as the database store.

``NANOWEB_RESILIENCE_STORE`` picks one ("redis" by default when ``REDIS_URL``
is set).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from datetime import timedelta
from functools import lru_cache

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from generations.models import KeyPermit, ProviderKey, RouteCircuit
from generations.resilience import circuit
from generations.resilience.types import (
    BUSY_RETRY,
    BreakerConfig,
    Decision,
    Limits,
    Permit,
    Wait,
    day_bounds,
    new_token,
    window_seconds,
)


def _slot(now, times: list, rpm: int, window):
    """The earliest time at or after ``now`` a call may be booked, given the booked
    times in the current window (sorted): after the last booking, and late enough
    that the ``rpm``-th booking before it has left the window."""
    at = now
    if times:
        at = max(at, times[-1])
    if len(times) >= rpm:
        at = max(at, times[len(times) - rpm] + window)
    return at


class DatabaseStore:
    name = "database"

    # --- rate limiter ---
    def acquire(
        self, key_id: int, limits: Limits, lease: float, *, ahead: float = 0.0, book=True
    ) -> Permit | Wait:
        with transaction.atomic():
            if book:
                list(
                    ProviderKey.objects.select_for_update(no_key=True)
                    .filter(pk=key_id)
                    .values("pk")
                )
            now = timezone.now()
            permits = KeyPermit.objects.filter(key_id=key_id)
            if limits.rpd:
                start, end = day_bounds(now)
                if permits.filter(granted_at__gte=start).count() >= limits.rpd:
                    return Wait((end - now).total_seconds(), "rpd")
            at = now
            if limits.rpm:
                window = timedelta(seconds=window_seconds())
                times = list(
                    permits.filter(granted_at__gt=now - window)
                    .order_by("granted_at")
                    .values_list("granted_at", flat=True)
                )
                at = _slot(now, times, limits.rpm, window)
                delay = (at - now).total_seconds()
                if delay > ahead:
                    return Wait(max(0.01, delay), "rpm")
            if limits.concurrency:
                busy = permits.filter(
                    released_at__isnull=True, granted_at__lte=now, expires_at__gt=now
                ).count()
                if busy >= limits.concurrency:
                    return Wait(BUSY_RETRY, "concurrency")
            delay = (at - now).total_seconds()
            if not book:
                return Permit(key_id, "", delay)
            token = new_token()
            KeyPermit.objects.create(
                key_id=key_id,
                token=token,
                granted_at=at,
                expires_at=at + timedelta(seconds=lease),
            )
        return Permit(key_id, token, delay)

    def release(self, permit: Permit) -> None:
        KeyPermit.objects.filter(token=permit.token, released_at__isnull=True).update(
            released_at=timezone.now()
        )

    def renew(self, permit: Permit, lease: float) -> None:
        KeyPermit.objects.filter(token=permit.token, released_at__isnull=True).update(
            expires_at=timezone.now() + timedelta(seconds=lease)
        )

    def key_usage(self, key_id: int) -> dict[str, int]:
        now = timezone.now()
        permits = KeyPermit.objects.filter(key_id=key_id)
        return {
            "minute": permits.filter(
                granted_at__gt=now - timedelta(seconds=window_seconds())
            ).count(),
            "day": permits.filter(granted_at__gte=day_bounds(now)[0]).count(),
            "in_flight": permits.filter(released_at__isnull=True, expires_at__gt=now).count(),
        }

    def prune(self) -> int:
        """Forget grants older than any window still needs (called by the reconciler)."""
        cutoff = timezone.now() - timedelta(days=2)
        return KeyPermit.objects.filter(granted_at__lt=cutoff).delete()[0]

    # --- circuit breaker ---
    def breaker_allow(self, route_id: int, cfg: BreakerConfig, job: str | None = None) -> Decision:
        with self._circuit(route_id) as row:
            row.state, decision = circuit.allow(row.state, time.time(), cfg, job)
        return decision

    def breaker_record(
        self, route_id: int, ok: bool, cfg: BreakerConfig, job: str | None = None
    ) -> dict:
        with self._circuit(route_id) as row:
            row.state = circuit.record(row.state, ok, time.time(), cfg, job)
        return row.state

    def breaker_state(self, route_id: int) -> dict:
        row = RouteCircuit.objects.filter(route_id=route_id).first()
        return {**circuit.fresh(), **(row.state if row else {})}

    @contextmanager
    def _circuit(self, route_id: int):
        """The route's breaker row, locked for the block and saved if it changed."""
        with transaction.atomic():
            locked = RouteCircuit.objects.select_for_update(no_key=True).filter(route_id=route_id)
            row = locked.first()
            if row is None:  # the route's first call: make its row, then lock it
                RouteCircuit.objects.get_or_create(route_id=route_id)
                row = locked.get()
            before = dict(row.state)
            yield row
            if row.state != before:
                row.save(update_fields=["state", "updated"])


ACQUIRE_LUA = """
local minute, inflight, day = KEYS[1], KEYS[2], KEYS[3]
local window, rpm, rpd = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local conc, lease, token = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local day_left, busy_retry = tonumber(ARGV[7]), ARGV[8]
local ahead, book = tonumber(ARGV[9]), ARGV[10] == '1'
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', minute, '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
if rpd > 0 and tonumber(redis.call('GET', day) or '0') >= rpd then
  return {0, tostring(day_left), 'rpd'}
end
local at = now
if rpm > 0 then
  local n = redis.call('ZCARD', minute)
  if n > 0 then
    local last = redis.call('ZRANGE', minute, -1, -1, 'WITHSCORES')
    at = math.max(at, tonumber(last[2]))
  end
  if n >= rpm then
    local nth = redis.call('ZRANGE', minute, n - rpm, n - rpm, 'WITHSCORES')
    at = math.max(at, tonumber(nth[2]) + window)
  end
  if at - now > ahead then
    return {0, tostring(math.max(0.01, at - now)), 'rpm'}
  end
end
if conc > 0 and redis.call('ZCARD', inflight) >= conc then
  return {0, busy_retry, 'concurrency'}
end
if not book then
  return {1, '', tostring(at - now)}
end
redis.call('ZADD', minute, at, token)
redis.call('EXPIRE', minute, math.ceil(window + at - now) + 5)
redis.call('ZADD', inflight, at + lease, token)
redis.call('EXPIRE', inflight, math.ceil(lease + at - now) + 5)
redis.call('INCR', day)
redis.call('EXPIRE', day, math.ceil(day_left) + 3600)
return {1, token, tostring(at - now)}
"""


# A slot still held (not released, not expired) lives ``lease`` seconds from now, by
# the Redis server's clock as every other score in the set.
RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) > now then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) + 5 then
    redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 5)
  end
end
return 0
"""


class RedisStore:
    name = "redis"

    def __init__(self, url: str, prefix: str = "nanoweb:") -> None:
        self.prefix = prefix
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._acquire = self.redis.register_script(ACQUIRE_LUA)
        self._renew = self.redis.register_script(RENEW_LUA)

    def _keys(self, key_id: int, now=None) -> tuple[str, str, str]:
        day = day_bounds(now)[0].date().isoformat()
        p = f"{self.prefix}key:{key_id}:"
        return p + "minute", p + "inflight", p + "day:" + day

    def acquire(
        self, key_id: int, limits: Limits, lease: float, *, ahead: float = 0.0, book=True
    ) -> Permit | Wait:
        now = timezone.now()
        token = new_token()
        day_left = (day_bounds(now)[1] - now).total_seconds()
        granted, value, extra = self._acquire(
            keys=self._keys(key_id, now),
            args=[
                window_seconds(),
                limits.rpm or 0,
                limits.rpd or 0,
                limits.concurrency or 0,
                lease,
                token,
                day_left,
                BUSY_RETRY,
                min(ahead, 1e9),
                "1" if book else "0",
            ],
        )
        if int(granted):
            return Permit(key_id, value, float(extra))
        return Wait(float(value), extra)

    def release(self, permit: Permit) -> None:
        self.redis.zrem(self._keys(permit.key_id)[1], permit.token)

    def renew(self, permit: Permit, lease: float) -> None:
        self._renew(keys=[self._keys(permit.key_id)[1]], args=[permit.token, lease])

    def key_usage(self, key_id: int) -> dict[str, int]:
        minute, inflight, day = self._keys(key_id)
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcount(minute, now - window_seconds(), "+inf")
        pipe.get(day)
        pipe.zcount(inflight, now, "+inf")
        m, d, f = pipe.execute()
        return {"minute": int(m), "day": int(d or 0), "in_flight": int(f)}

    def prune(self) -> int:
        return 0  # every key expires by itself

    def breaker_allow(self, route_id: int, cfg: BreakerConfig, job: str | None = None) -> Decision:
        decision = None

        def step(state):
            nonlocal decision
            state, decision = circuit.allow(state, time.time(), cfg, job)
            return state

        self._update(route_id, step)
        return decision

    def breaker_record(
        self, route_id: int, ok: bool, cfg: BreakerConfig, job: str | None = None
    ) -> dict:
        return self._update(route_id, lambda s: circuit.record(s, ok, time.time(), cfg, job))

    def breaker_state(self, route_id: int) -> dict:
        raw = self.redis.get(self._circuit_key(route_id))
        return {**circuit.fresh(), **(json.loads(raw) if raw else {})}

    def _circuit_key(self, route_id: int) -> str:
        return f"{self.prefix}route:{route_id}:circuit"

    def _update(self, route_id: int, step) -> dict:
        name = self._circuit_key(route_id)
        ttl = math.ceil(settings.NANOWEB_BREAKER_OPEN_SECONDS * 10 + 3600)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name)
                    raw = pipe.get(name)
                    before = {**circuit.fresh(), **(json.loads(raw) if raw else {})}
                    after = step(before)
                    pipe.multi()
                    if after != before:
                        pipe.set(name, json.dumps(after), ex=ttl)
                    pipe.execute()
                    return after
                except redis.WatchError:
                    continue


@lru_cache(maxsize=4)
def _store(kind: str, url: str, prefix: str):
    if kind == "redis":
        return RedisStore(url, prefix)
    if kind == "database":
        return DatabaseStore()
    raise ValueError(f"NANOWEB_RESILIENCE_STORE must be 'database' or 'redis', not {kind!r}")


def get_store() -> DatabaseStore | RedisStore:
    return _store(
        settings.NANOWEB_RESILIENCE_STORE, settings.REDIS_URL, settings.NANOWEB_REDIS_PREFIX
    )
