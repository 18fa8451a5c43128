"""The attempt loop against a real sandbox upstream on loopback (no worker needed:
each test drives run_generation() by hand, as the Celery task would)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from PIL import Image as PILImage

from accounts import quotas
from accounts.models import LedgerEntry
from generations import engine, outcomes, queue
from generations.models import Generation, ProviderKey
from tests.factories import make_route, png_bytes, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


def test_it_makes_an_image_and_settles_its_actual_cost(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, aspect_ratio="16:9", image_size="1K")
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded"
    with PILImage.open(job.image.file) as im:
        assert im.size == (1376, 768)  # 16:9 at 1K, as Gemini 3.x answers
    assert job.usage["output_image_tokens"] == 1120
    assert 0 < job.actual_micros <= job.reserved_micros
    s = quotas.summary(alice)
    assert (s.spent_month, s.reserved_month, s.images_today) == (job.actual_micros, 0, 1)
    assert quotas.ledger_problems() == []
    assert job.attempt_log.get().outcome == "ok"


def test_it_sends_reference_images_upstream(alice, sandbox_model):
    job = submit_one(
        sandbox_model, alice, reference_bytes=[png_bytes(), png_bytes(color=(1, 2, 3))]
    )
    engine.run_generation(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.references.count() == 2
    assert job.usage["input_tokens"] > 2 * 258  # the sandbox billed both references


def test_it_retries_a_503_and_then_succeeds(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, prompt="a boat [sandbox:503x1]")
    delay = engine.run_generation(job.pk)
    assert delay is not None
    job.refresh_from_db()
    assert (job.status, job.stage) == ("queued", "retrying")
    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert [a.outcome for a in job.attempt_log.all()] == ["transient", "ok"]


def test_it_fails_a_blocked_prompt_at_once_and_refunds(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, prompt="something [sandbox:blocked]")
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "failed" and job.refunded
    assert job.error_kind == "blocked"
    assert "safety" in job.error_message.lower()
    assert quotas.summary(alice).images_today == 0
    assert LedgerEntry.objects.filter(generation=job, kind="release").exists()


def test_it_gives_up_after_the_retry_budget_and_releases(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, prompt="never [sandbox:503]")
    for _ in range(10):
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            break
    job.refresh_from_db()
    assert job.status == "failed"
    assert job.attempt_log.count() == 4  # the first call and 3 retries
    assert quotas.summary(alice).reserved_month == 0
    assert quotas.ledger_problems() == []


def test_it_rests_a_key_whose_daily_quota_is_gone(alice, sandbox_model):
    job = submit_one(sandbox_model, alice, prompt="x [sandbox:daily]")
    engine.run_generation(job.pk)
    key = ProviderKey.objects.get(provider__is_sandbox=True)
    assert key.exhausted_until > timezone.now()
    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    engine.run_generation(job.pk)
    job.refresh_from_db()
    assert job.status == "failed"
    assert "daily quota" in job.error_message


def test_it_disables_a_key_the_upstream_calls_invalid(alice, db):
    from generations.sandbox.server import SandboxConfig, running_sandbox

    with running_sandbox(SandboxConfig(invalid_keys={"test-key-0123456789"})) as url:
        model = make_route("nano-banana", base_url=url).model
        job = submit_one(model, alice)
        engine.run_generation(job.pk)
    key = ProviderKey.objects.get(label="primary")
    assert not key.enabled and key.disabled_reason


def test_it_fails_clearly_when_no_provider_has_a_key(alice, db):
    route = make_route("nano-banana")
    job = submit_one(route.model, alice)
    ProviderKey.objects.update(enabled=False)
    engine.run_generation(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and job.refunded
    assert "No provider is available for Nano Banana" in job.error_message


def test_it_lets_only_one_worker_claim_a_job(alice, sandbox_model):
    job = submit_one(sandbox_model, alice)
    assert engine.claim(job.pk) is not None
    assert engine.claim(job.pk) is None


def test_it_reconciles_lost_stuck_and_overdue_jobs(
    alice, sandbox_model, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(queue, "enqueue", sent.extend)
    lost, stuck, overdue = (submit_one(sandbox_model, alice) for _ in range(3))
    long_ago = timezone.now() - timedelta(hours=1)
    Generation.objects.filter(pk=lost.pk).update(enqueued_at=long_ago)
    Generation.objects.filter(pk=stuck.pk).update(status="running", lease_until=long_ago)
    Generation.objects.filter(pk=overdue.pk).update(deadline=long_ago)

    with django_capture_on_commit_callbacks(execute=True):
        counts = engine.reconcile()

    assert counts == {
        "expired": 1,
        "reclaimed": 1,
        "requeued": 2,
        "permits_pruned": 0,
        "spools_dropped": 0,
    }
    assert set(sent) == {lost.pk, stuck.pk}
    overdue.refresh_from_db()
    assert overdue.status == "failed" and overdue.refunded
    assert quotas.ledger_problems() == []


def _files_under(root) -> list[str]:
    import os

    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


def test_a_file_half_written_when_the_disk_fills_up_is_removed(
    alice, sandbox_model, settings, monkeypatch
):
    """The storage writes part of the original, then the disk is full: the storage never
    names the file it leaves behind, so the engine must know the path itself."""
    from django.core.files.base import ContentFile

    real_chunks = ContentFile.chunks
    calls = {"n": 0}

    def full_after_100_bytes(self, chunk_size=None):
        calls["n"] += 1
        if calls["n"] == 1:
            yield self.read()[:100]
            raise OSError(28, "No space left on device")
        yield from real_chunks(self, chunk_size)

    monkeypatch.setattr(ContentFile, "chunks", full_after_100_bytes)
    job = submit_one(sandbox_model, alice)
    before = _files_under(settings.MEDIA_ROOT)
    assert engine.run_generation(job.pk) is not None
    assert calls["n"] == 1  # the write did start
    assert _files_under(settings.MEDIA_ROOT) == before
    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded"
    assert len(_files_under(settings.MEDIA_ROOT)) == len(before) + 2  # the image, its thumbnail


def test_an_image_that_cannot_be_stored_is_retried_then_saved(
    alice, sandbox_model, settings, monkeypatch
):
    from django.core.files.storage import Storage

    real_save = Storage.save
    calls = {"n": 0}

    def disk_full_once(self, name, content, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the original went to disk, then the thumbnail hits a full disk
            raise OSError(28, "No space left on device")
        return real_save(self, name, content, *args, **kwargs)

    monkeypatch.setattr(Storage, "save", disk_full_once)
    job = submit_one(sandbox_model, alice)
    before = _files_under(settings.MEDIA_ROOT)
    delay = engine.run_generation(job.pk)
    assert delay is not None  # not left running until its lease runs out
    job.refresh_from_db()
    assert (job.status, job.stage) == ("queued", "queued")
    attempt = job.attempt_log.get()
    assert attempt.outcome == "not_saved" and attempt.may_have_been_billed
    assert "No space left" in attempt.detail
    assert _files_under(settings.MEDIA_ROOT) == before  # the half-saved original is gone

    Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
    assert engine.run_generation(job.pk) is None
    job.refresh_from_db()
    assert job.status == "succeeded" and job.image.file.size > 0
    assert [a.outcome for a in job.attempt_log.all()] == ["not_saved", "ok"]
    assert quotas.summary(alice).spent_month == job.actual_micros  # charged once
    assert quotas.ledger_problems() == []


def test_an_image_that_never_can_be_stored_fails_refunded(
    alice, sandbox_model, settings, monkeypatch
):
    from django.db import DatabaseError

    def broken(*args, **kwargs):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(engine.quotas, "settle", broken)
    job = submit_one(sandbox_model, alice)
    before = _files_under(settings.MEDIA_ROOT)
    for _ in range(10):
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            break
    job.refresh_from_db()
    assert (job.status, job.error_kind, job.refunded) == ("failed", "not_saved", True)
    assert job.attempt_log.count() == 1 + outcomes.SAVE_RETRIES
    assert not hasattr(job, "image") or job.image is None
    assert _files_under(settings.MEDIA_ROOT) == before  # nothing left behind
    assert quotas.summary(alice).reserved_month == 0 and quotas.ledger_problems() == []
    assert job.failure_title == "Could not save the image"


def test_an_image_stored_on_the_third_try_is_asked_for_and_paid_once(
    alice, sandbox_model, sandbox_url, settings, monkeypatch
):
    """The upstream answered; our storage failed twice. The retries store the bytes that
    arrived: the upstream sees one call, the person pays once, the spool is gone."""
    import httpx
    from django.core.files.storage import Storage

    from generations.models.jobs import SpooledAnswer

    real_save = Storage.save
    saves = {"n": 0}

    def full_disk_twice(self, name, content, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] <= 2:
            raise OSError(28, "No space left on device")
        return real_save(self, name, content, *args, **kwargs)

    monkeypatch.setattr(Storage, "save", full_disk_twice)
    calls_before = httpx.get(f"{sandbox_url}/healthz").json()["requests"]
    job = submit_one(sandbox_model, alice)
    assert engine.run_generation(job.pk) is not None
    assert SpooledAnswer.objects.filter(generation=job).exists()
    for _ in range(2):
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        delay = engine.run_generation(job.pk)
    assert delay is None
    job.refresh_from_db()
    assert job.status == "succeeded" and job.image.file.size > 0
    assert [a.outcome for a in job.attempt_log.all()] == ["not_saved", "not_saved", "ok"]
    assert httpx.get(f"{sandbox_url}/healthz").json()["requests"] == calls_before + 1
    assert LedgerEntry.objects.filter(generation=job, kind="settle").count() == 1
    assert quotas.summary(alice).spent_month == job.actual_micros
    assert not SpooledAnswer.objects.exists()
    assert quotas.ledger_problems() == []


def test_an_answer_kept_for_a_job_that_fails_at_last_is_dropped(alice, sandbox_model, monkeypatch):
    from django.db import DatabaseError

    from generations.models.jobs import SpooledAnswer

    def broken(*args, **kwargs):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(engine.quotas, "settle", broken)
    job = submit_one(sandbox_model, alice)
    engine.run_generation(job.pk)
    assert SpooledAnswer.objects.filter(generation=job).exists()
    for _ in range(5):
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            break
    job.refresh_from_db()
    assert (job.status, job.refunded) == ("failed", True)
    assert not SpooledAnswer.objects.exists()


def test_a_late_job_is_sent_again_soon_unless_the_broker_has_a_line(
    alice, sandbox_model, settings, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(queue, "enqueue", sent.extend)
    job = submit_one(sandbox_model, alice)
    late = timezone.now() - timedelta(seconds=settings.NANOWEB_REQUEUE_AFTER_SECONDS + 5)
    Generation.objects.filter(pk=job.pk).update(enqueued_at=late)

    monkeypatch.setattr(queue, "waiting_messages", lambda: 40)  # it may just be in line
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.sweep()["requeued"] == 0
    monkeypatch.setattr(queue, "waiting_messages", lambda: 0)  # nothing waits: it was lost
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.sweep()["requeued"] == 1
    assert sent == [job.pk]
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.sweep()["requeued"] == 0  # sent once, not at every sweep


def test_a_job_whose_worker_died_is_reclaimed_by_the_sweep(
    alice, sandbox_model, monkeypatch, django_capture_on_commit_callbacks
):
    sent = []
    monkeypatch.setattr(queue, "enqueue", sent.extend)
    job = submit_one(sandbox_model, alice)
    assert engine.claim(job.pk) is not None
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.sweep() == {"reclaimed": 0, "requeued": 0}  # its lease still runs
    Generation.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert engine.sweep() == {"reclaimed": 1, "requeued": 1}
    assert sent == [job.pk]
