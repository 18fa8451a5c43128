"""Cards without an image say why in plain words, show the refund, and offer Retry."""

from html import escape

import pytest

from accounts import quotas
from generations import engine, jobs
from generations.failures import ErrorKind, explain
from generations.models import Generation
from tests.factories import submit_one

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", [k for k in ErrorKind if k != ErrorKind.CANCELLED])
def test_it_explains_every_failure_class(client, alice, sandbox_model, no_broker, kind):
    job = submit_one(sandbox_model, alice)
    engine.fail(job, kind, "Engine detail.")
    client.force_login(alice)
    page = client.get("/").content.decode()
    title, reason = str(explain(kind).title), str(explain(kind).reason)
    assert title != "No image this time"  # every kind has words of its own
    assert escape(title) in page and escape(reason) in page
    assert "Refunded — you were not charged." in page
    assert ">Retry</button>" in page and ">Edit prompt</a>" in page


def test_a_cancelled_card_says_so(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    jobs.cancel(alice, job.request_id)
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "Cancelled" in page and "You cancelled it before it was made." in page


def test_edit_prompt_refills_the_studio_form(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice, prompt="a heron & a frog", aspect_ratio="16:9")
    engine.fail(job, "blocked", "Blocked.")
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert "?prompt=a%20heron%20%26%20a%20frog&amp;model=sandbox&amp;aspect_ratio=16%3A9" in page
    form = client.get(
        "/", {"prompt": "a heron & a frog", "model": "sandbox", "aspect_ratio": "16:9"}
    ).content.decode()
    assert "a heron &amp; a frog</textarea>" in form


def test_retry_starts_a_new_job_with_the_same_settings(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice, prompt="a kite", aspect_ratio="4:3", image_size="2K")
    engine.fail(job, "no_image", "Nothing.")
    client.force_login(alice)
    r = client.post(f"/jobs/{job.pk}/retry", HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    new = Generation.objects.exclude(pk=job.pk).get()
    assert (new.prompt, new.aspect_ratio, new.image_size, new.status) == (
        "a kite",
        "4:3",
        "2K",
        "queued",
    )
    assert f'id="job-{new.pk}"' in r.content.decode() and "Queued" in r.content.decode()
    assert quotas.summary(alice).images_today == 1  # the failed one was released


def test_retry_over_quota_says_which_limit_and_starts_nothing(
    client, alice, sandbox_model, no_broker
):
    alice.daily_image_limit = 1
    alice.save()
    job = submit_one(sandbox_model, alice)
    engine.fail(job, "blocked", "Blocked.")
    submit_one(sandbox_model, alice, prompt="uses the last image")
    client.force_login(alice)
    r = client.post(f"/jobs/{job.pk}/retry", HTTP_HX_REQUEST="true")
    assert r.status_code == 422
    assert "daily" in r.content.decode().lower()
    assert Generation.objects.count() == 2


def test_retry_refuses_a_job_that_succeeded_or_runs(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    client.force_login(alice)
    r = client.post(f"/jobs/{job.pk}/retry", HTTP_HX_REQUEST="true")
    assert r.status_code == 400 and "Only a job that made no image" in r.content.decode()
    assert Generation.objects.count() == 1


def test_retry_of_someone_elses_job_is_404(client, alice, bob, charlie, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    engine.fail(job, "blocked", "Blocked.")
    for other in (bob, charlie):
        client.force_login(other)
        assert client.post(f"/jobs/{job.pk}/retry").status_code == 404
    assert Generation.objects.count() == 1


def test_retry_needs_post(client, alice, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    client.force_login(alice)
    assert client.get(f"/jobs/{job.pk}/retry").status_code == 405


def test_a_queued_card_can_be_cancelled_and_its_money_comes_back(
    client, alice, sandbox_model, no_broker
):
    job = submit_one(sandbox_model, alice)
    client.force_login(alice)
    page = client.get("/").content.decode()
    assert f'hx-post="/jobs/{job.pk}/cancel"' in page
    r = client.post(f"/jobs/{job.pk}/cancel", HTTP_HX_REQUEST="true")
    assert r.status_code == 200
    text = r.content.decode()
    assert "Cancelled" in text and "Refunded" in text
    job.refresh_from_db()
    assert (job.status, job.refunded) == ("cancelled", True)
    assert quotas.summary(alice).reserved_month == 0


def test_a_running_card_has_no_cancel_and_a_late_cancel_says_why(
    client, alice, sandbox_model, no_broker
):
    job = submit_one(sandbox_model, alice)
    assert engine.claim(job.pk) is not None  # a worker has it
    client.force_login(alice)
    assert f"/jobs/{job.pk}/cancel" not in client.get("/").content.decode()
    r = client.post(f"/jobs/{job.pk}/cancel", HTTP_HX_REQUEST="true")
    assert r.status_code == 409 and "already started" in r.content.decode()
    job.refresh_from_db()
    assert job.status == "running"


def test_cancel_of_someone_elses_job_is_404(client, alice, bob, sandbox_model, no_broker):
    job = submit_one(sandbox_model, alice)
    client.force_login(bob)
    assert client.post(f"/jobs/{job.pk}/cancel").status_code == 404
    job.refresh_from_db()
    assert job.status == "queued"
