"""The queue-style calling model in the engine, against a scripted upstream in-process:
submit once, poll on countdowns without using attempts, resume after a crash without
submitting again, give up on a request it cannot ask about, call off on cancel and at
the deadline, rest a key out of credit, and count requests waiting per key."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine, jobs, polling, queue
from generations.failures import ErrorKind
from generations.models import Attempt, Generation, Notice, ProviderKey
from generations.providers import base
from generations.providers.base import (
    GeneratedImage,
    ImageResult,
    Pending,
    ProviderError,
    QueueProvider,
    UpstreamJob,
    Usage,
)
from tests.factories import make_route, make_user, png_bytes, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

PER_IMAGE = {"per_image": {"default": 39000}}  # Nano Banana has one size


class Scripted(QueueProvider):
    """Each poll takes the next answer of ``script`` ("pending", "running", "done", or
    a ProviderError); every call is counted."""

    script: list = []
    calls: list = []
    submit_error: ProviderError | None = None
    cancel_answer = True

    def submit(self, request, *, webhook_url=None):
        Scripted.calls.append(("submit", request.prompt, webhook_url))
        if Scripted.submit_error:
            raise Scripted.submit_error
        n = sum(1 for c in Scripted.calls if c[0] == "submit")
        job = UpstreamJob(f"req-{n}", {"status": f"https://up.example/req-{n}/status"})
        return Pending(job, position=3)

    def poll(self, job):
        Scripted.calls.append(("poll", job.id))
        answer = Scripted.script.pop(0) if Scripted.script else "done"
        if isinstance(answer, ProviderError):
            raise answer
        if answer in ("pending", "running"):
            return Pending(job, started=answer == "running")
        return ImageResult((GeneratedImage(png_bytes(), "image/png"),), Usage())

    def cancel(self, job):
        Scripted.calls.append(("cancel", job.id))
        return Scripted.cancel_answer


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(base.PROVIDER_KINDS, "scripted", f"{__name__}.Scripted")
    monkeypatch.setattr(
        "generations.models.Provider.QUEUED_KINDS", frozenset({"fal", "replicate", "scripted"})
    )
    Scripted.script, Scripted.calls = [], []
    Scripted.submit_error, Scripted.cancel_answer = None, True
    cancelled = []
    monkeypatch.setattr(queue, "cancel_upstream", lambda ids: cancelled.extend(ids))
    route = make_route("nano-banana", kind="scripted", provider_name="Queue", prices=PER_IMAGE)
    return route, cancelled


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


def due(job) -> None:
    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())


def submits() -> int:
    return sum(1 for c in Scripted.calls if c[0] == "submit")


def test_a_job_is_submitted_once_polled_without_attempts_and_settled_per_image(scripted, alice):
    route, _ = scripted
    Scripted.script = ["running"]
    job = submit_one(route.model, alice)

    delay = engine.run_generation(job.pk)
    job.refresh_from_db()
    assert delay >= 1.0  # a countdown, not a sleeping worker
    assert (job.status, job.upstream_id, job.attempts) == ("queued", "req-1", 1)
    assert job.stage == "in the provider's queue (#4)"
    assert job.upstream_job["route"] == route.pk and job.upstream_job["price"]

    due(job)
    assert engine.run_generation(job.pk) is not None
    job.refresh_from_db()
    assert (job.stage, job.attempts, job.upstream_job["polls"]) == (
        "generating at the provider",
        1,
        1,
    )

    due(job)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.attempts, job.actual_micros) == ("succeeded", 1, 39000)
    assert job.upstream_job is None and job.upstream_id == "req-1"
    assert submits() == 1
    assert [a.outcome for a in job.attempt_log.all()] == ["ok"]
    assert quotas.ledger_problems() == []


def test_a_reclaimed_job_polls_the_same_request_instead_of_paying_again(scripted, alice):
    route, _ = scripted
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    # A worker claimed the poll and died: the lease runs out, beat reclaims the job.
    due(job)
    assert engine.claim(job.pk) is not None
    Generation.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    engine.reconcile()
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert submits() == 1
    assert [c[0] for c in Scripted.calls] == ["submit", "poll"]


def test_a_status_url_that_cannot_be_asked_is_polled_again_then_given_up(scripted, alice):
    route, _ = scripted
    down = ProviderError(ErrorKind.TRANSIENT, "The provider is unavailable.", http_status=503)
    Scripted.script = [down] * polling.POLL_ERRORS
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    for _ in range(polling.POLL_ERRORS - 1):
        due(job)
        assert engine.run_generation(job.pk) is not None
        job.refresh_from_db()
        assert job.upstream_id == "req-1" and job.upstream_job  # still the same request
    assert job.upstream_job["poll_errors"] == polling.POLL_ERRORS - 1
    assert not job.attempt_log.exists()  # asking is not an attempt
    due(job)
    engine.run_generation(job.pk)  # the last one: call it off, retry as a new attempt
    job.refresh_from_db()
    assert ("cancel", "req-1") in Scripted.calls
    assert job.upstream_job is None and job.status == "queued"
    assert [a.outcome for a in job.attempt_log.all()] == ["transient"]
    due(job)
    engine.run_generation(job.pk)  # a fresh submit
    assert submits() == 2


def test_a_request_the_upstream_blocked_fails_and_is_refunded(scripted, alice):
    route, _ = scripted
    Scripted.script = [
        ProviderError(ErrorKind.BLOCKED, "Blocked by the safety filter.", http_status=200)
    ]
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    due(job)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "blocked", True)
    assert job.upstream_job is None
    assert quotas.summary(alice).reserved_month == 0
    assert quotas.ledger_problems() == []


def test_cancel_while_queued_upstream_refunds_and_calls_it_off(
    scripted, alice, django_capture_on_commit_callbacks
):
    route, cancelled = scripted
    Scripted.script = ["pending"]
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    with django_capture_on_commit_callbacks(execute=True):
        assert [g.pk for g in jobs.cancel(alice, job.request_id)] == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.refunded) == ("cancelled", True)
    assert cancelled == [job.pk]
    polling.cancel_upstream(job.pk)  # what the task does
    assert ("cancel", "req-1") in Scripted.calls
    attempt = job.attempt_log.get()
    assert attempt.outcome == "cancelled" and not attempt.may_have_been_billed
    job.refresh_from_db()
    assert job.upstream_job is None
    assert engine.run_generation(job.pk) is None  # the countdown that was due does nothing
    assert quotas.ledger_problems() == []


def test_a_cancel_that_comes_too_late_upstream_is_flagged_as_maybe_billed(scripted, alice):
    route, _ = scripted
    Scripted.script, Scripted.cancel_answer = ["running"], False
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    jobs.cancel(alice, job.request_id)
    polling.cancel_upstream(job.pk)
    attempt = job.attempt_log.get()
    assert attempt.may_have_been_billed and "may bill" in attempt.detail


def test_the_deadline_fails_the_job_and_calls_the_request_off(
    scripted, alice, django_capture_on_commit_callbacks
):
    route, cancelled = scripted
    job = submit_one(route.model, alice)
    engine.run_generation(job.pk)
    Generation.objects.filter(pk=job.pk).update(deadline=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        engine.reconcile()
    job.refresh_from_db()
    assert (job.status, job.error_kind) == ("failed", "deadline")
    assert cancelled == [job.pk]


def test_an_account_out_of_credit_rests_the_key_tells_admins_and_fails_over(scripted, alice):
    route, _ = scripted
    Scripted.submit_error = ProviderError(
        ErrorKind.OUT_OF_CREDIT, "Out of credit.", detail="User is locked", http_status=403
    )
    job = submit_one(route.model, alice)
    delay = engine.run_generation(job.pk)
    key = ProviderKey.objects.get(provider=route.provider)
    assert key.enabled and key.exhausted_until > timezone.now() + timedelta(minutes=50)
    notice = Notice.objects.get()
    assert "out of credit" in notice.title and "Top up" in notice.message
    job.refresh_from_db()
    # No other key or route: the job fails plainly, refunded.
    assert delay is None and job.status == "failed"
    assert job.error_kind == "out_of_credit"
    assert quotas.ledger_problems() == []


def test_max_concurrency_counts_requests_waiting_upstream_per_key(scripted, alice):
    route, _ = scripted
    route.provider.max_concurrency = 1
    route.provider.save()
    Scripted.script = ["pending"] * 5
    first = submit_one(route.model, alice, prompt="first")
    second = submit_one(route.model, alice, prompt="second")
    engine.run_generation(first.pk)
    engine.run_generation(second.pk)
    second.refresh_from_db()
    assert (second.status, second.stage, second.attempts) == (
        "queued",
        "waiting for the provider",
        0,
    )
    assert submits() == 1


def test_a_submit_that_fails_goes_through_the_usual_failure_path(scripted, alice):
    route, _ = scripted
    Scripted.submit_error = ProviderError(ErrorKind.PERMANENT, "Invalid.", http_status=422)
    job = submit_one(route.model, alice)
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.upstream_id) == ("failed", "permanent", "")
    assert Attempt.objects.get().outcome == "permanent"


def _handle(route, *, submitted_ago: float, **times_ago) -> dict:
    now = timezone.now()
    handle = {"route": route.pk, "submitted": (now - timedelta(seconds=submitted_ago)).isoformat()}
    for name, ago in times_ago.items():
        handle[name] = (now - timedelta(seconds=ago)).isoformat()
    return handle


# Ages are measured against the clock, so each figure allows half a second of a slow machine.
def test_polls_space_out_in_line_and_come_back_just_before_a_request_should_be_done(
    scripted, monkeypatch, settings
):
    route, _ = scripted
    settings.NANOWEB_POLL_MIN_SECONDS, settings.NANOWEB_POLL_MAX_SECONDS = 1.0, 8.0
    job = UpstreamJob("r")
    next_poll = polling._next_poll
    provider = route.provider
    # In line: a quarter of its age, capped; far back in a line that moves at 2/s,
    # about halfway to its turn (never later than 4 × the cap).
    assert next_poll(
        None, _handle(route, submitted_ago=2), Pending(job), provider
    ) == pytest.approx(1.0, abs=0.5)
    assert next_poll(
        None, _handle(route, submitted_ago=20), Pending(job), provider
    ) == pytest.approx(5.0, abs=0.5)
    assert next_poll(
        None, _handle(route, submitted_ago=100), Pending(job), provider
    ) == pytest.approx(8.0, abs=0.5)
    monkeypatch.setattr(polling, "_finish_rate", lambda route_id: 2.0)
    far_back = Pending(job, position=40)
    assert next_poll(None, _handle(route, submitted_ago=2), far_back, provider) == pytest.approx(
        10.0, abs=0.05
    )
    assert (
        next_poll(None, _handle(route, submitted_ago=2), Pending(job, position=400), provider) == 32
    )
    # Working, on a route whose requests take about 20 s once started: wait until a
    # little before then, then look every second; without that knowledge, 15 % of age.
    working = Pending(job, started=True)
    started_5s_ago = _handle(route, submitted_ago=30, running_since=5, seen_running=5)
    assert next_poll(None, started_5s_ago, working, provider) == 1.0  # 15 % of 5 s < 1 s
    monkeypatch.setitem(polling._durations, route.pk, 20.0)
    assert next_poll(None, started_5s_ago, working, provider) == 8.0  # 0.8 × 15 s, capped
    almost = _handle(route, submitted_ago=30, running_since=12, seen_running=10)
    assert next_poll(None, almost, working, provider) == pytest.approx(7.2, abs=0.5)
    due_now = _handle(route, submitted_ago=30, running_since=20, seen_running=18)
    assert next_poll(None, due_now, working, provider) == pytest.approx(1.0, abs=0.5)
    # The upstream's own hint wins.
    assert next_poll(None, started_5s_ago, Pending(job, poll_after=3.5), provider) == pytest.approx(
        3.5, abs=0.05
    )


def test_a_finished_request_teaches_the_route_how_long_its_requests_work(scripted):
    route, _ = scripted
    polling._durations.pop(route.pk, None)
    # Started between 30 s and 26 s ago, finished between 6 s ago and now: from the
    # middle of one gap to the middle of the other, 28 - 3 = 25 s.
    polling._learn_duration(
        _handle(route, submitted_ago=40, running_since=30, seen_running=26, last_poll=6)
    )
    assert polling._durations[route.pk] == pytest.approx(25, abs=0.5)
