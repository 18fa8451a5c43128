"""The sandbox's configuration and the state its request threads share: which faults to
inject (by prompt trigger or by rate), the per-key quotas it enforces, and the replies
that refuse a request over them in each API's words.

Fault classes come in two groups. ``FAULTS`` are those every protocol has answered from
the start (Gemini, OpenAI Images); ``CHANNEL_FAULTS`` were added with the queue and relay
protocols (fal, Replicate, chat relays) and take each protocol's own form there, while
the Gemini and OpenAI paths answer them with their nearest equivalent (see ``direct``).
``ALL_FAULTS`` is both; rates and triggers accept any of them."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from generations.sandbox import openai_images as openai
from generations.sandbox import responses
from generations.sandbox.parse import BadRequest
from generations.sandbox.specs import MODELS

FAULTS = (
    "rate_limit",  # 429 per-minute quota, with RetryInfo
    "daily_quota",  # 429 per-day quota
    "unavailable",  # 503 overloaded
    "internal",  # 500
    "region",  # 400 FAILED_PRECONDITION (OpenAI: 403), the account's region is not served
    "deadline",  # 504
    "timeout",  # no answer at all: the connection is held for hang_seconds, then closed
    "malformed",  # 200 whose body is not valid JSON
    "truncated",  # 200 whose image base64 is cut short
    "prompt_block",  # 200 with promptFeedback.blockReason and no candidates
    "image_safety",  # 200, finishReason IMAGE_SAFETY, no parts
    "no_image",  # 200, finishReason NO_IMAGE, no parts
    "text_only",  # 200, finishReason STOP, a text part and no image
)
CHANNEL_FAULTS = (
    "out_of_credit",  # the account has no money left (fal 403 "User is locked", Replicate 402)
    "saturated",  # a relay's pool is saturated (One API / New API 429); others: overloaded
    "slow_queue",  # the request takes SandboxConfig.slow_queue_seconds longer, then succeeds
    "capacity",  # the model is at capacity (Replicate: its fallback model, when allowed)
)
ALL_FAULTS = FAULTS + CHANNEL_FAULTS
CHAT_IMAGE_STYLES = ("data", "link", "images")
TRIGGERS = {
    **{name: name for name in ALL_FAULTS},
    "429": "rate_limit",
    "daily": "daily_quota",
    "503": "unavailable",
    "500": "internal",
    "504": "deadline",
    "blocked": "prompt_block",
    "credit": "out_of_credit",
    "slow": "slow_queue",
}
TRIGGER = re.compile(r"\[sandbox:(?P<name>[a-z0-9_]+?)(?:x(?P<times>\d+))?\]", re.IGNORECASE)
FREE_TIER_RPD = 100  # the limit an injected per-day 429 quotes when none is configured


@dataclass
class SandboxConfig:
    """How the sandbox misbehaves. The defaults answer every request at once, correctly."""

    latency_min: float = 0.0  # seconds, drawn uniformly per request that reaches "the model"
    latency_max: float = 0.0
    # Share of requests (0..1) answered with each class in ALL_FAULTS; together at most 1.
    rates: dict[str, float] = field(default_factory=dict)
    rpm: int | None = None  # per key, sliding 60 s window
    daily_quota: int | None = None  # per key, per UTC day
    invalid_keys: frozenset[str] = frozenset()
    seed: int | None = None
    hang_seconds: float = 600.0  # how long a "timeout" holds the connection
    # API key → model ids that key cannot see: not listed, and 404 on generateContent
    # and models.get (a project without access to a model, as Google answers it).
    hidden_models: Mapping[str, Iterable[str]] = field(default_factory=dict)
    # Keys whose account is always out of credit (each protocol's out_of_credit answer).
    broke_keys: frozenset[str] = frozenset()
    # The queue protocols (fal, Replicate): per API key, this many jobs run at once, in
    # submission order, each taking a uniform draw from queue_latency seconds.
    queue_concurrency: int = 4
    queue_latency: tuple[float, float] = (0.2, 0.5)
    slow_queue_seconds: float = 5.0  # what a slow_queue fault adds to a job
    lose_webhooks: float = 0.0  # share (0..1) of webhook deliveries dropped entirely
    webhook_retries: int = 3  # attempts after the first failed delivery
    webhook_backoff: float = 0.5  # seconds before the first retry, doubled each time
    # Generated files served at /files/{name}: kept this long (Replicate deletes outputs
    # after an hour) and at most this many bytes in all (the oldest go first).
    file_ttl: float = 3600.0
    file_store_bytes: int = 256 * 1024 * 1024
    # How the chat relay puts the image in the message: "data" (markdown data URI),
    # "link" (markdown link to /files) or "images" (OpenRouter's message.images).
    chat_image_style: str = "data"
    # Replicate's signing secret, as GET /v1/webhooks/default/secret gives it.
    replicate_webhook_secret: str = "whsec_c2FuZGJveC1yZXBsaWNhdGUtd2ViaG9vay1zZWNyZXQ="
    # Freepik's webhook secret (its dashboard shows one; the HMAC key is its raw bytes).
    freepik_webhook_secret: str = "sandbox-freepik-webhook-secret"

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(ALL_FAULTS)
        if unknown:
            raise ValueError(f"Unknown fault classes {sorted(unknown)}; use {ALL_FAULTS}")
        if any(not 0 <= rate <= 1 for rate in self.rates.values()):
            raise ValueError("Fault rates are shares between 0 and 1")
        if sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError("Fault rates add up to more than 1")
        if not 0 <= self.latency_min <= self.latency_max:
            raise ValueError("Latency needs 0 <= min <= max")
        low, high = self.queue_latency
        if not 0 <= low <= high:
            raise ValueError("Queue latency needs 0 <= min <= max")
        if self.queue_concurrency < 1:
            raise ValueError("Queue concurrency must be at least 1")
        if not 0 <= self.lose_webhooks <= 1:
            raise ValueError("lose_webhooks is a share between 0 and 1")
        if self.chat_image_style not in CHAT_IMAGE_STYLES:
            raise ValueError(f"chat_image_style must be one of {CHAT_IMAGE_STYLES}")
        if not self.replicate_webhook_secret.startswith("whsec_"):
            raise ValueError("replicate_webhook_secret must look like whsec_<base64>")
        self.queue_latency = (float(low), float(high))
        self.invalid_keys = frozenset(self.invalid_keys)
        self.broke_keys = frozenset(self.broke_keys)
        self.hidden_models = {
            key: frozenset(models) for key, models in dict(self.hidden_models).items()
        }

    def can_see(self, key: str, model: str) -> bool:
        """Whether ``key`` may use ``model``: served by the sandbox and not hidden from it."""
        return model in MODELS and model not in self.hidden_models.get(key, ())


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    outcome: str = "ok"
    hang: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = ""  # "": the protocol's JSON type

    @classmethod
    def of(
        cls,
        status: int,
        body: dict,
        outcome: str = "ok",
        headers=(),
        content_type: str = "",
        *,
        ascii_only: bool = True,
    ) -> Reply:
        data = json.dumps(body, indent=2, ensure_ascii=ascii_only).encode()
        return cls(status, data, outcome, headers=tuple(headers), content_type=content_type)


@dataclass(frozen=True)
class Request:
    """One HTTP request as the protocol modules see it (the server has read it)."""

    method: str
    path: str  # without the protocol's prefix (/fal, /replicate/v1), without the query
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # case-insensitive get(), as http.server's headers
    body: bytes | None  # None: too large to read
    origin: str  # the sandbox's own http://host:port

    def param(self, name: str) -> str:
        return self.query.get(name, [""])[0]


@dataclass(frozen=True)
class Refusal:
    """Why a key's request is over quota, in terms both APIs can phrase."""

    per_day: bool
    wait: float  # seconds until a request would be admitted again
    limit: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


def gemini_refusal(model: str, refusal: Refusal) -> Reply:
    """429 RESOURCE_EXHAUSTED naming the per-minute or per-day quota, with RetryInfo."""
    body = responses.rate_limited_body(
        model, refusal.wait, per_day=refusal.per_day, limit=refusal.limit
    )
    return Reply.of(429, body, "daily_quota" if refusal.per_day else "rpm_exceeded")


def openai_refusal(model: str, refusal: Refusal, outcome: str = "") -> Reply:
    """429 ``insufficient_quota`` for the day, else ``rate_limit_exceeded`` with retry-after-ms."""
    if refusal.per_day:
        return Reply.of(429, openai.insufficient_quota_body(), outcome or "daily_quota")
    body = openai.rate_limited_body(model, refusal.wait, refusal.limit)
    headers = openai.rate_limit_headers(refusal.wait)
    return Reply.of(429, body, outcome or "rpm_exceeded", headers)


class SandboxState:
    """Counters shared by all request threads: quotas, trigger counts and the RNG."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.config = config
        self.requests = 0
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._minute: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[date, int]] = {}
        self._triggered: Counter[str] = Counter()

    def admit(self, key: str, model: str) -> Reply | None:
        """Count a request against ``key``'s quotas, or return Gemini's 429 refusing it."""
        refusal = self.check_quota(key)
        return None if refusal is None else gemini_refusal(model, refusal)

    def check_quota(self, key: str) -> Refusal | None:
        """Count a request against ``key``'s quotas, or say why it is refused."""
        cfg = self.config
        with self._lock:
            now, wall = self._clock(), self._wall()
            day, used = self._daily.get(key, (wall.date(), 0))
            if day != wall.date():
                day, used = wall.date(), 0
            if cfg.daily_quota is not None and used >= cfg.daily_quota:
                return self._per_day(wall, cfg.daily_quota)
            window = self._minute.setdefault(key, deque())
            while window and now - window[0] >= 60:
                window.popleft()
            if cfg.rpm is not None and len(window) >= cfg.rpm:
                return Refusal(per_day=False, wait=60 - (now - window[0]), limit=cfg.rpm)
            window.append(now)
            self._daily[key] = (day, used + 1)
        return None

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1

    def injected_daily(self) -> Refusal:
        return self._per_day(self._wall(), self.config.daily_quota or FREE_TIER_RPD)

    def _per_day(self, wall: datetime, limit: int) -> Refusal:
        midnight = datetime.combine(wall.date() + timedelta(days=1), datetime.min.time(), UTC)
        return Refusal(per_day=True, wait=(midnight - wall).total_seconds(), limit=limit)

    def fault_for(self, prompt: str, key: str | None = None) -> str | None:
        """The fault class this request gets: out_of_credit for a broke key, else its
        trigger's, else a random draw, else None."""
        if key is not None and key in self.config.broke_keys:
            return "out_of_credit"
        match = TRIGGER.search(prompt)
        if match is None:
            return self._draw()
        name = TRIGGERS.get(match["name"].lower())
        if name is None:
            raise BadRequest(
                f"Unknown sandbox trigger {match[0]!r}; known classes: {', '.join(TRIGGERS)}"
            )
        if match["times"] is None:
            return name
        with self._lock:
            self._triggered[prompt] += 1
            seen = self._triggered[prompt]
        return name if seen <= int(match["times"]) else None

    def _draw(self) -> str | None:
        rates = self.config.rates
        if not any(rates.values()):
            return None
        with self._lock:
            point = self._rng.random()
        for name in ALL_FAULTS:
            point -= rates.get(name, 0.0)
            if point < 0:
                return name
        return None

    def latency(self) -> float:
        lo, hi = self.config.latency_min, self.config.latency_max
        if hi <= 0:
            return 0.0
        with self._lock:
            return self._rng.uniform(lo, hi)

    def queue_duration(self, fault: str | None = None) -> float:
        """How long one queued job runs: a draw from queue_latency, plus the slow_queue delay."""
        low, high = self.config.queue_latency
        with self._lock:
            seconds = self._rng.uniform(low, high) if high > 0 else 0.0
        if fault == "slow_queue":
            seconds += self.config.slow_queue_seconds
        return seconds

    def chance(self, share: float) -> bool:
        """True with probability ``share`` (from the seeded RNG)."""
        if share <= 0:
            return False
        with self._lock:
            return self._rng.random() < share

    def request_rng(self) -> random.Random:
        """A private RNG for one response, so building it needs no lock."""
        with self._lock:
            return random.Random(self._rng.getrandbits(64))
