"""fal.ai, Replicate and a chat-completions relay through the engine, against the
sandbox speaking their wire formats on loopback (no worker: each test drives
run_generation() by hand, as the Celery task would)."""

import time

import httpx
import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine, jobs, polling
from generations.models import Generation, Provider, ProviderKey, Route
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, make_user, png_bytes, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

PRO_PRICE = {"per_image": {"1K": 150_000, "2K": 150_000, "4K": 300_000}}


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(queue_latency=(0.2, 0.2), queue_concurrency=4)) as url:
        yield url


def counters(url: str) -> dict:
    return httpx.get(f"{url}/healthz").json().get("queue", {})


def channel(url: str, kind: str, upstream: str, model="nano-banana-pro", **kwargs) -> Route:
    base = {"fal": f"{url}/fal", "replicate": f"{url}/replicate/v1", "openai_chat": f"{url}/v1"}
    return make_route(
        model,
        kind=kind,
        base_url=base[kind],
        upstream=upstream,
        provider_name=kind,
        key={"replicate": "r8_sandbox0123456789"}.get(kind, "sandbox-key-0123456789"),
        prices=kwargs.pop("prices", PRO_PRICE),
        **kwargs,
    )


def run_until_done(job, timeout: float = 20.0) -> Generation:
    """Run attempts and polls as the countdowns would, without waiting for them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            job.refresh_from_db()
            if job.is_finished:
                return job
        time.sleep(0.1)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize(
    ("kind", "upstream"),
    [
        ("fal", "fal-ai/nano-banana-pro"),
        ("replicate", "google/nano-banana-pro"),
        ("openai_chat", "gemini-3-pro-image"),
    ],
)
def test_each_channel_makes_an_image_settled_at_its_per_image_price(sandbox, alice, kind, upstream):
    route = channel(sandbox, kind, upstream)
    job = run_until_done(submit_one(route.model, alice, image_size="2K", aspect_ratio="16:9"))
    assert job.status == "succeeded", job.error_message
    assert job.route == route and job.actual_micros == 150_000
    assert job.image.width > job.image.height  # 16:9 went through the channel's fields
    assert quotas.ledger_problems() == []
    if kind != "openai_chat":
        assert counters(sandbox)["submitted"] == 1  # one request, however many polls


def test_references_go_to_fal_s_edit_endpoint(sandbox, alice):
    route = channel(sandbox, "fal", "fal-ai/nano-banana-pro")
    job = submit_one(route.model, alice, image_size="1K", reference_bytes=[png_bytes()])
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    assert job.upstream_id and counters(sandbox)["submitted"] == 1


def test_a_blocked_prompt_at_fal_fails_plainly_and_is_refunded(sandbox, alice):
    route = channel(sandbox, "fal", "fal-ai/nano-banana-pro")
    job = run_until_done(submit_one(route.model, alice, prompt="a cat [sandbox:blocked]"))
    assert (job.status, job.error_kind, job.refunded) == ("failed", "blocked", True)
    assert quotas.summary(alice).reserved_month == 0


def test_an_out_of_credit_fal_key_rests_and_the_other_key_makes_the_image(alice):
    config = SandboxConfig(queue_latency=(0.1, 0.1), broke_keys=frozenset({"broke-key-0123456789"}))
    with running_sandbox(config) as url:
        route = channel(url, "fal", "fal-ai/nano-banana-pro")
        broke = ProviderKey.objects.get(provider=route.provider)
        broke.set_key("broke-key-0123456789")
        broke.save()
        good = ProviderKey(provider=route.provider, label="second")
        good.set_key("good-key-0123456789")
        good.save()
        job = run_until_done(submit_one(route.model, alice, image_size="1K"))
    assert job.status == "succeeded", job.error_message
    broke.refresh_from_db()
    assert broke.exhausted_until > timezone.now()
    assert [a.outcome for a in job.attempt_log.all()] == ["out_of_credit", "ok"]


def test_replicate_s_fallback_model_is_named_on_the_job_only_when_allowed(sandbox, alice):
    route = channel(sandbox, "replicate", "google/nano-banana-pro")
    Route.objects.filter(pk=route.pk).update(allow_fallback_model=True)
    job = run_until_done(
        submit_one(route.model, alice, image_size="1K", prompt="x [sandbox:capacity]")
    )
    assert job.status == "succeeded", job.error_message
    assert "seedream" in job.served_by


def test_cancel_calls_the_request_off_at_fal(alice):
    with running_sandbox(SandboxConfig(queue_latency=(30, 30), queue_concurrency=1)) as url:
        route = channel(url, "fal", "fal-ai/nano-banana-pro")
        first = submit_one(route.model, alice, prompt="the one running", image_size="1K")
        second = submit_one(route.model, alice, prompt="the one queued", image_size="1K")
        engine.run_generation(first.pk)
        engine.run_generation(second.pk)
        second.refresh_from_db()
        assert second.upstream_id and second.status == "queued"
        assert [g.pk for g in jobs.cancel(alice, second.request_id)] == [second.pk]
        polling.cancel_upstream(second.pk)  # what the task sent on commit does
        assert counters(url)["cancelled"] == 1
    attempt = second.attempt_log.get()
    assert attempt.outcome == "cancelled" and not attempt.may_have_been_billed
    second.refresh_from_db()
    assert (second.status, second.refunded, second.upstream_job) == ("cancelled", True, None)


def test_a_relay_on_a_single_label_host_is_saved_and_used(sandbox, alice):
    route = channel(sandbox, "openai_chat", "gemini-3-pro-image")
    provider = Provider.objects.get(pk=route.provider.pk)
    provider.full_clean()  # the model validation the admin runs
    assert provider.base_url.startswith("http://127.0.0.1:")
    provider.base_url = "http://relay:8080/v1"
    provider.full_clean()
