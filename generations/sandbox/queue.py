"""What the sandbox's queue protocols (fal, Replicate) share: jobs on a simulated queue,
the files they make, the webhooks they send, and the counters tests read.

* The queue runs no thread per job. Per lane (protocol and API key),
  ``SandboxConfig.queue_concurrency`` jobs run at once in submission order; a job's start
  and end are computed when it is submitted (``Scheduler.reserve``) and its status is
  derived from the clock afterwards. A job cancelled while queued leaves the queue at
  once (the positions behind it move up) but its reserved slot is not handed back: the
  jobs behind it keep the start times they were given. fal's documented concurrency is
  per account ("Concurrency per account 2–40", fal pricing and limits pages, as gathered
  in shared/CHANNELS.md); Replicate runs public models on a shared pool
  (https://replicate.com/docs/topics/predictions/lifecycle): one lane per key stands in
  for both.
* Generated files are kept in memory and served at ``GET /files/{name}``
  (``FileStore``): each for ``SandboxConfig.file_ttl`` seconds (Replicate removes
  outputs after an hour: "All input parameters, output values, and logs are
  automatically removed after an hour", Replicate's predictions.get reference, as in
  replicate-python-beta's src/replicate/resources/predictions.py; fal keeps results "for
  1 hour after the request completes", https://fal.ai/docs/inference-api/queue/result),
  and the oldest are dropped once they weigh more than ``file_store_bytes``.
* One background thread sends every webhook (``WebhookSender``), from a heap of due
  times. A failed delivery (no answer, or not a 2xx) is tried again
  ``SandboxConfig.webhook_retries`` times, ``webhook_backoff`` seconds later and doubling:
  fal retries "10 attempts over 2 hours" and Replicate "a few times"
  (replicate-python-beta, models/predictions.py, ``webhook``); the sandbox keeps the
  idea and shortens the schedule. ``SandboxConfig.lose_webhooks`` drops that share of
  deliveries before their first attempt, as a network that loses them would.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT = 5.0  # seconds a receiver has to answer one delivery
# A delivery builder returns the URL, the body and the headers to send now, or None
# when the delivery no longer applies (the job was cancelled since, for instance).
Delivery = Callable[[], "tuple[str, bytes, dict[str, str]] | None"]


class QueueCounters:
    """What tests read from /healthz: how often each thing happened, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._by_prompt: Counter[str] = Counter()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def submitted(self, prompt: str) -> None:
        with self._lock:
            self._counts["submitted"] += 1
            self._by_prompt[prompt] += 1

    def touched(self) -> bool:
        with self._lock:
            return bool(self._counts)

    def snapshot(self) -> dict:
        with self._lock:
            counts = dict(self._counts)
            by_prompt = dict(self._by_prompt)
        names = (
            "submitted",
            "cancelled",
            "webhooks_sent",
            "webhooks_lost",
            "webhooks_failed",
            "polls",
        )
        snapshot: dict = {name: counts.get(name, 0) for name in names}
        snapshot["submitted_by_prompt"] = by_prompt
        return snapshot


class FileStore:
    """Generated files, in memory: kept ``ttl`` seconds, at most ``max_bytes`` in all."""

    def __init__(
        self, ttl: float, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[bytes, str, float]] = OrderedDict()
        self._bytes = 0

    def put(self, data: bytes, extension: str, content_type: str, made: float | None = None) -> str:
        """Keep ``data`` (made at monotonic time ``made``, default now); returns its name
        (served at /files/{name})."""
        name = f"{uuid.uuid4().hex}.{extension}"
        with self._lock:
            self._files[name] = (data, content_type, self._clock() if made is None else made)
            self._bytes += len(data)
            self._evict()
        return name

    def get(self, name: str) -> tuple[bytes, str] | None:
        with self._lock:
            self._evict()
            found = self._files.get(name)
        return None if found is None else (found[0], found[1])

    def _evict(self) -> None:
        now = self._clock()
        for name in [n for n, (_, _, made) in self._files.items() if now - made >= self.ttl]:
            self._bytes -= len(self._files.pop(name)[0])
        while self._files and self._bytes > self.max_bytes:
            _, (data, _, _) = self._files.popitem(last=False)
            self._bytes -= len(data)


@dataclass
class Job:
    """One queued request. Times are time.monotonic(); ``wall`` turns them into Unix time."""

    id: str
    lane: tuple[str, str]
    seq: int
    created: float
    created_wall: float
    start: float
    end: float
    fault: str | None
    prompt: str
    data: dict = field(default_factory=dict)  # the protocol's own state
    cancelled_at: float | None = None
    version: int = 0  # bumped when a cancellation changes what the job's webhooks say
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _outcome: object = field(default=None, repr=False)

    def wall(self, t: float) -> float:
        return self.created_wall + (t - self.created)

    def outcome(self, make: Callable[[Job], object]) -> object:
        """What the job made, computed once (images are rendered on first need)."""
        with self.lock:
            if self._outcome is None:
                self._outcome = make(self)
            return self._outcome


class Scheduler:
    """Per lane, ``concurrency`` slots taken in submission order (FIFO)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._slots: dict[tuple[str, str], list[float]] = {}
        self._waiting: dict[tuple[str, str], deque[tuple[float, int]]] = {}

    def reserve(self, lane: tuple[str, str], now: float, seq: int, duration: float):
        """(start, end) of a job submitted at ``now`` that runs ``duration`` seconds."""
        with self._lock:
            slots = self._slots.setdefault(lane, [0.0] * self.concurrency)
            i = min(range(len(slots)), key=slots.__getitem__)
            start = max(now, slots[i])
            slots[i] = start + duration
            if start > now:
                self._waiting.setdefault(lane, deque()).append((start, seq))
        return start, start + duration

    def position(self, lane: tuple[str, str], seq: int, now: float) -> int:
        """How many jobs of the lane are queued ahead of job ``seq`` (0: it is next)."""
        with self._lock:
            waiting = self._waiting.get(lane, deque())
            while waiting and waiting[0][0] <= now:
                waiting.popleft()
            return sum(1 for _, other in waiting if other < seq)

    def leave(self, lane: tuple[str, str], seq: int) -> None:
        """A queued job was cancelled: it no longer counts for the positions behind it."""
        with self._lock:
            waiting = self._waiting.get(lane)
            if waiting:
                self._waiting[lane] = deque(item for item in waiting if item[1] != seq)


class WebhookSender:
    """One daemon thread delivering webhooks when they fall due, with retries."""

    def __init__(self, config, state, counters: QueueCounters, stopping: threading.Event):
        self.config = config
        self.state = state
        self.counters = counters
        self.stopping = stopping
        self._heap: list[tuple[float, int, Delivery, int]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def schedule(self, due: float, delivery: Delivery) -> None:
        """Send ``delivery`` at monotonic time ``due`` (unless lose_webhooks drops it)."""
        if self.state.chance(self.config.lose_webhooks):
            self.counters.add("webhooks_lost")
            return
        with self._wake:
            heapq.heappush(self._heap, (due, next(self._seq), delivery, 0))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-webhooks", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def stop(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _run(self) -> None:
        while not self.stopping.is_set():
            with self._wake:
                if not self._heap:
                    self._wake.wait(0.5)
                    continue
                due = self._heap[0][0]
                delay = due - time.monotonic()
                if delay > 0:
                    self._wake.wait(min(delay, 0.5))
                    continue
                _, _, delivery, attempt = heapq.heappop(self._heap)
            self._attempt(delivery, attempt)

    def _attempt(self, delivery: Delivery, attempt: int) -> None:
        try:
            built = delivery()
        except Exception:  # a bug in a builder must not kill the sender
            log.exception("sandbox: building a webhook failed")
            return
        if built is None:
            return
        url, body, headers = built
        if _post(url, body, headers):
            self.counters.add("webhooks_sent")
            return
        if attempt >= self.config.webhook_retries or self.stopping.is_set():
            self.counters.add("webhooks_failed")
            return
        retry_at = time.monotonic() + self.config.webhook_backoff * 2**attempt
        with self._wake:
            heapq.heappush(self._heap, (retry_at, next(self._seq), delivery, attempt + 1))
            self._wake.notify()


def _post(url: str, body: bytes, headers: dict[str, str]) -> bool:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.info("sandbox: webhook to %s failed: %s", url, exc)
        return False


class QueueEngine:
    """The jobs of every queue protocol, their scheduler, files, webhooks and counters."""

    def __init__(self, config, state, stopping: threading.Event) -> None:
        self.config = config
        self.state = state
        self.stopping = stopping
        self.counters = QueueCounters()
        self.files = FileStore(config.file_ttl, config.file_store_bytes)
        self.scheduler = Scheduler(config.queue_concurrency)
        self.webhooks = WebhookSender(config, state, self.counters, stopping)
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._seq = itertools.count()

    def submit(
        self,
        lane: tuple[str, str],
        job_id: str,
        prompt: str,
        fault: str | None,
        *,
        duration: float | None = None,
        data: dict | None = None,
    ) -> Job:
        """Queue a job (duration: the queue_latency draw, unless given) and count it."""
        if duration is None:
            duration = self.state.queue_duration(fault)
        now, wall = time.monotonic(), time.time()
        seq = next(self._seq)
        start, end = self.scheduler.reserve(lane, now, seq, duration)
        job = Job(job_id, lane, seq, now, wall, start, end, fault, prompt, data or {})
        with self._lock:
            self._jobs[job_id] = job
        self.counters.submitted(prompt)
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job: Job, at: float) -> None:
        """Mark ``job`` cancelled at monotonic time ``at`` (the caller checked it may be)."""
        with job.lock:
            job.cancelled_at = at
            job.version += 1
        if at < job.start:
            self.scheduler.leave(job.lane, job.seq)
        self.counters.add("cancelled")

    def position(self, job: Job, now: float) -> int:
        return self.scheduler.position(job.lane, job.seq, now)

    def poll(self) -> None:
        self.counters.add("polls")

    def store(self, data: bytes, extension: str, content_type: str, made: float) -> str:
        """Keep a file a job made at monotonic time ``made`` (its TTL runs from then)."""
        return self.files.put(data, extension, content_type, made)
