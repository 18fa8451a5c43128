"""A Hugging Face Space and a ComfyUI server through the engine, against the sandbox
speaking Gradio's and ComfyUI's wire formats on loopback (no worker: each test drives
run_generation() by hand, as the Celery task would)."""

import logging
import time
from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine
from generations.models import Generation, Price, Provider, ProviderKey, Route
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, make_user, png_bytes, submit_one
from tests.generations.providers.test_comfyui import WORKFLOW

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

HF_TOKEN = "hf_sandboxSECRET0123456789abcdef"
SPACE = {
    "space": "black-forest-labs/FLUX.1-schnell",
    "api_name": "/infer",
    "arguments": ["", 0, True, 1024, 1024, 4],
    "prompt": 0,
    "seed": 1,
    "width": 3,
    "height": 4,
    "output": 0,
}
EDIT_SPACE = {
    "api_name": "/edit",
    "arguments": [None, "", 0, 1024, 1024],
    "image": 0,
    "prompt": 1,
    "seed": 2,
    "width": 3,
    "height": 4,
}
COMFY = {
    "workflow": {k: v for k, v in WORKFLOW.items() if k != "10"},
    "nodes": {
        "prompt": "6.inputs.text",
        "width": "5.inputs.width",
        "height": "5.inputs.height",
        "seed": "3.inputs.seed",
    },
}
PER_IMAGE = {"per_image": {"default": 2_000}}


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(queue_latency=(0.2, 0.2), queue_concurrency=1)) as url:
        yield url


def channel(url: str, kind: str, options: dict, *, key: str = "none", free: bool = True) -> Route:
    base = {"hf_space": f"{url}/hf", "comfyui": f"{url}/comfyui"}[kind]
    route = make_route(
        "nano-banana",
        kind=kind,
        base_url=base,
        upstream="flux-schnell" if kind == "hf_space" else "sd15-workflow",
        provider_name=kind,
        key=key,
        price=not free,
        prices=PER_IMAGE,
    )
    Provider.objects.filter(pk=route.provider.pk).update(options=options)
    Route.objects.filter(pk=route.pk).update(is_free=free)
    route.refresh_from_db()
    return route


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


@pytest.mark.parametrize(("kind", "options"), [("hf_space", SPACE), ("comfyui", COMFY)])
def test_a_free_route_makes_the_image_at_the_ratio_asked_and_bills_nothing(
    sandbox, alice, kind, options
):
    route = channel(sandbox, kind, options)
    job = run_until_done(submit_one(route.model, alice, aspect_ratio="16:9"))
    assert job.status == "succeeded", job.error_message
    assert job.route == route and job.actual_micros == 0
    assert (job.image.width, job.image.height) == (1344, 768)
    assert quotas.ledger_problems() == []
    assert quotas.summary(alice).reserved_month == 0


@pytest.mark.parametrize(("kind", "options"), [("hf_space", SPACE), ("comfyui", COMFY)])
def test_a_priced_route_settles_at_its_per_image_price(sandbox, alice, kind, options):
    route = channel(sandbox, kind, options, free=False)
    assert Price.objects.filter(route=route).exists()
    job = run_until_done(submit_one(route.model, alice))
    assert job.status == "succeeded", job.error_message
    assert job.actual_micros == 2_000
    assert quotas.ledger_problems() == []


def test_a_reference_goes_up_to_the_space_and_the_token_stays_out_of_the_logs(
    sandbox, alice, caplog
):
    caplog.set_level(logging.DEBUG)
    route = channel(sandbox, "hf_space", EDIT_SPACE, key=HF_TOKEN)
    job = submit_one(route.model, alice, reference_bytes=[png_bytes()])
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    failing = run_until_done(submit_one(route.model, alice, prompt="x [sandbox:blocked]"))
    assert (failing.error_kind, failing.refunded) == ("blocked", True)
    assert HF_TOKEN not in caplog.text
    assert all(HF_TOKEN not in (a.detail or "") for a in failing.attempt_log.all())
    assert quotas.ledger_problems() == []


def test_a_zerogpu_quota_error_rests_the_key_and_the_next_key_makes_the_image(sandbox, alice):
    route = channel(sandbox, "hf_space", SPACE, key=HF_TOKEN)
    spare = ProviderKey(provider=route.provider, label="spare")
    spare.set_key("hf_spareSECRET0123456789abcdef")
    spare.save()
    job = run_until_done(submit_one(route.model, alice, prompt="a fox [sandbox:dailyx1]"))
    assert job.status == "succeeded", job.error_message
    assert [a.outcome for a in job.attempt_log.order_by("number")] == ["key_exhausted", "ok"]
    rested = ProviderKey.objects.get(provider=route.provider, label="primary")
    assert rested.exhausted_until > timezone.now()
    assert quotas.ledger_problems() == []


def test_a_quota_wait_rests_the_key_that_long_and_does_not_hold_the_job(sandbox, alice):
    route = channel(sandbox, "hf_space", SPACE, key=HF_TOKEN)
    spare = ProviderKey(provider=route.provider, label="spare")
    spare.set_key("hf_spareSECRET0123456789abcdef")
    spare.save()
    job = submit_one(route.model, alice, prompt="a fox [sandbox:dailyx1]")
    engine.run_generation(job.pk)  # the first attempt: the Space names its wait
    job.refresh_from_db()
    rested = ProviderKey.objects.get(provider=route.provider, label="primary")
    said = job.attempt_log.get().detail
    h, m, sec = (int(x) for x in said.rsplit(" ", 1)[-1].split(":"))
    wait = timedelta(hours=h, minutes=m, seconds=sec)
    assert abs(rested.exhausted_until - (timezone.now() + wait)) < timedelta(minutes=1)
    # the wait belongs to the key: the job goes on with the spare one straight away
    assert job.next_attempt_at - timezone.now() < timedelta(seconds=5)


def test_a_sleeping_space_is_retried_until_it_wakes(sandbox, alice):
    route = channel(sandbox, "hf_space", SPACE)
    job = run_until_done(submit_one(route.model, alice, prompt="a fox [sandbox:503x1]"))
    assert job.status == "succeeded", job.error_message
    assert [a.outcome for a in job.attempt_log.order_by("number")] == ["transient", "ok"]


def test_comfyui_out_of_memory_is_retried_and_a_broken_workflow_fails_plainly(sandbox, alice):
    route = channel(sandbox, "comfyui", COMFY)
    job = run_until_done(submit_one(route.model, alice, prompt="a fox [sandbox:capacityx1]"))
    assert job.status == "succeeded", job.error_message
    broken = {
        **COMFY,
        "workflow": {**COMFY["workflow"], "4": {"class_type": "Missing", "inputs": {}}},
    }
    Provider.objects.filter(pk=route.provider.pk).update(options=broken)
    failed = run_until_done(submit_one(route.model, alice, prompt="a cat"))
    assert failed.status == "failed" and failed.refunded
    assert "Missing" in failed.error_message
    assert quotas.ledger_problems() == []


def test_a_comfyui_job_waits_in_the_server_s_queue_without_holding_a_worker(alice):
    with running_sandbox(SandboxConfig(queue_latency=(0.6, 0.6), queue_concurrency=1)) as url:
        route = channel(url, "comfyui", COMFY)
        first = submit_one(route.model, alice, prompt="the first")
        second = submit_one(route.model, alice, prompt="the second")
        engine.run_generation(first.pk)
        engine.run_generation(second.pk)
        second.refresh_from_db()
        assert second.upstream_id and second.status == "queued"
        queued = httpx.get(f"{url}/comfyui/queue").json()
        assert [item[1] for item in queued["queue_pending"]] == [second.upstream_id]
        done = [run_until_done(first), run_until_done(second)]
    assert [j.status for j in done] == ["succeeded", "succeeded"]
    assert quotas.ledger_problems() == []
