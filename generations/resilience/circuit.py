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

A route that is failing must be told from jobs that are failing (one person's prompts
that break the upstream every time must not rest the route for the whole team). So
each outcome carries its job, and:

* a job counts once: its repeated failures in the window add nothing;
* a job that fails again after another job succeeded on the route fails alone: its
  failure is taken back from the route's count (it fails by its own retry budget);
* while another job succeeded on the route in the last ``vouch`` seconds, the route
  does not open (the failures are counted, and judged again at the next one);
* a half-open probe is a job other than those whose failures opened the breaker; they
  may probe only one further ``open_seconds`` later, if no other job came.

Outcomes without a job (``job=None``) count each, as a plain breaker would.
"""

from __future__ import annotations

from generations.resilience.types import BreakerConfig, Decision

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EXCUSED = -1.0  # in ``failed_jobs``: the job fails alone, its failure no longer counts
MAX_JOBS = 100  # jobs remembered per window (and as trippers): the state stays small


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
        "failed_jobs": {},  # job → when it first failed in this window (or EXCUSED)
        "last_ok": 0.0,
        "last_ok_job": "",
        "tripped_by": [],  # the jobs whose failures opened it
    }


def allow(
    state: dict, now: float, cfg: BreakerConfig, job: str | None = None
) -> tuple[dict, Decision]:
    """May a call for ``job`` go through now? Returns the new state and the decision."""
    s = {**fresh(), **state}
    if s["state"] == CLOSED:
        return s, Decision(True)
    if s["state"] == OPEN and now < s["open_until"]:
        return s, Decision(False, wait=s["open_until"] - now)
    # Open and cooled down, or half-open: one probe at a time.
    if s["state"] == HALF_OPEN and now < s["probe_until"]:
        return s, Decision(False, wait=min(s["probe_until"] - now, 5.0))
    trippers_wait = s["open_until"] + cfg.open_seconds - now
    if job is not None and job in s["tripped_by"] and trippers_wait > 0:
        return s, Decision(False, wait=trippers_wait)  # let another job find out
    s.update(state=HALF_OPEN, probe_until=now + cfg.probe_lease)
    return s, Decision(True, probe=True)


def record(state: dict, ok: bool, now: float, cfg: BreakerConfig, job: str | None = None) -> dict:
    """The outcome of a call for ``job`` through the route."""
    s = {**fresh(), **state}
    if s["state"] == HALF_OPEN:
        if ok:
            closed = {**fresh(), "opened_count": s["opened_count"]}
            return {**closed, "last_ok": now, "last_ok_job": job or ""}
        return _open(s, now, cfg, [*s["tripped_by"], job] if job else s["tripped_by"])
    if now - s["window_start"] >= cfg.window:
        s.update(window_start=now, calls=0, failures=0, failed_jobs={})
    if ok:
        s.update(calls=s["calls"] + 1, consecutive=0, last_ok=now, last_ok_job=job or "")
        return s
    if job is not None and job in s["failed_jobs"]:
        return _again(s, job)
    if job is not None:
        s["failed_jobs"] = dict(list({**s["failed_jobs"], job: now}.items())[-MAX_JOBS:])
    s.update(calls=s["calls"] + 1, failures=s["failures"] + 1, consecutive=s["consecutive"] + 1)
    vouched = (
        job is not None and s["last_ok_job"] not in ("", job) and now - s["last_ok"] < cfg.vouch
    )
    if (
        s["state"] == CLOSED
        and not vouched
        and (
            s["consecutive"] >= cfg.consecutive
            or (s["calls"] >= cfg.min_calls and s["failures"] >= cfg.failure_rate * s["calls"])
        )
    ):
        return _open(s, now, cfg, [j for j, t in s["failed_jobs"].items() if t != EXCUSED])
    return s


def _again(s: dict, job: str) -> dict:
    """A job that failed here before fails again: it counted once already; if another
    job succeeded here since its first failure, it fails alone and is taken back."""
    first = s["failed_jobs"][job]
    if first != EXCUSED and s["last_ok"] > first and s["last_ok_job"] != job:
        s["failed_jobs"] = {**s["failed_jobs"], job: EXCUSED}
        s.update(failures=max(s["failures"] - 1, 0), calls=max(s["calls"] - 1, 0))
    return s


def _open(s: dict, now: float, cfg: BreakerConfig, tripped_by: list) -> dict:
    return {
        **s,
        "state": OPEN,
        "open_until": now + cfg.open_seconds,
        "probe_until": 0.0,
        "consecutive": 0,
        "window_start": now,
        "calls": 0,
        "failures": 0,
        "failed_jobs": {},
        "tripped_by": tripped_by[-MAX_JOBS:],
        "opened_count": s["opened_count"] + 1,
    }


def phase(state: dict, now: float) -> tuple[str, int]:
    """("open", seconds left), ("half-open (probing)", 0), ("half-open", 0) or
    ("closed", 0): what :func:`describe` says, for a page that words it itself."""
    s = {**fresh(), **state}
    if s["state"] == OPEN and now < s["open_until"]:
        return "open", round(s["open_until"] - now)
    if s["state"] in (OPEN, HALF_OPEN):
        return ("half-open (probing)" if now < s["probe_until"] else "half-open"), 0
    return "closed", 0


def describe(state: dict, now: float) -> str:
    """For admins and logs: "closed", "open for 42 s more", "half-open (probing)"."""
    name, seconds = phase(state, now)
    return f"open for {seconds} s more" if name == "open" else name
