"""The whole path with real processes: submit → broker → Celery worker → sandbox upstream
over HTTP → stored image and settled money."""

import pytest
from PIL import Image as PILImage

from accounts import quotas
from generations import jobs
from generations.models import Generation
from tests.factories import job_request, png_bytes, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def finished(*ids):
    def check():
        rows = list(Generation.objects.filter(pk__in=ids))
        return rows if all(r.status in ("succeeded", "failed") for r in rows) else None

    return check


def test_a_worker_process_makes_the_images_and_settles(alice, sandbox_model, celery_worker):
    made = jobs.submit(
        alice,
        job_request(sandbox_model, count=2, aspect_ratio="3:4", reference_bytes=[png_bytes()]),
    )
    rows = wait_for(
        finished(*[g.pk for g in made]), timeout=60, message="the worker did not finish both jobs"
    )
    assert [r.status for r in rows] == ["succeeded", "succeeded"]
    for job in rows:
        with PILImage.open(job.image.file) as im:
            assert im.size == (896, 1200)  # 3:4 at 1K, as Gemini 3.x answers
        assert job.image.thumbnail
        assert 0 < job.actual_micros <= job.reserved_micros
    s = quotas.summary(alice)
    assert s.images_today == 2
    assert s.reserved_month == 0
    assert s.spent_month == sum(r.actual_micros for r in rows)
    assert quotas.ledger_problems() == []


def test_a_503_is_retried_by_the_worker_and_succeeds(alice, sandbox_model, celery_worker):
    (job,) = jobs.submit(alice, job_request(sandbox_model, prompt="a heron [sandbox:503x1]"))
    (row,) = wait_for(finished(job.pk), timeout=60, message="the retried job did not finish")
    assert row.status == "succeeded"
    outcomes = list(row.attempt_log.order_by("number").values_list("outcome", flat=True))
    assert len(outcomes) == 2 and outcomes[-1] == "ok"
    assert quotas.ledger_problems() == []


def test_a_blocked_prompt_fails_and_releases_the_reservation(alice, sandbox_model, celery_worker):
    (job,) = jobs.submit(alice, job_request(sandbox_model, prompt="a thing [sandbox:blocked]"))
    (row,) = wait_for(finished(job.pk), timeout=60, message="the blocked job did not finish")
    assert (row.status, row.refunded) == ("failed", True)
    assert row.error_message
    s = quotas.summary(alice)
    assert (s.images_today, s.reserved_month, s.spent_month) == (0, 0, 0)
    assert quotas.ledger_problems() == []
