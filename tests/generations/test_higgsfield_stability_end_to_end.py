"""Higgsfield and Stability AI through the engine, against the sandbox speaking their wire
formats on loopback (no worker: each test drives run_generation() by hand, as the Celery
task would), with the money settled and the keys kept out of every log line."""

import logging

import httpx
import pytest

from accounts import quotas
from generations import discovery
from generations.catalog import channel_price
from generations.models import Provider
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, make_user, png_bytes, submit_one
from tests.generations.test_channels_end_to_end import run_until_done

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

HIGGSFIELD_KEY = "hf-key-id-0123:hf-SECRET-abcdefghijklmnop"
STABILITY_KEY = "sk-SECRETstability-abcdefghijklmnop"
PRO_PRICE = {"per_image": {"1K": 150_000, "2K": 150_000, "4K": 300_000}}
HIGGSFIELD_OPTIONS = {
    "fields": {
        "prompt": "prompt",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "image_urls": "input_images",
    },
    "resolutions": {"1K": "1k", "2K": "2k", "4K": "4k"},
}


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(queue_latency=(0.2, 0.2), queue_concurrency=4)) as url:
        yield url


@pytest.fixture(autouse=True)
def every_log_line(caplog):
    caplog.set_level(logging.DEBUG)
    yield caplog
    for secret in (HIGGSFIELD_KEY, HIGGSFIELD_KEY.partition(":")[2], STABILITY_KEY):
        assert secret not in caplog.text


def higgsfield(url: str):
    route = make_route(
        "nano-banana-pro",
        kind="higgsfield",
        base_url=f"{url}/higgsfield",
        upstream="sandbox/nano-banana-pro",
        provider_name="Higgsfield",
        key=HIGGSFIELD_KEY,
        prices=PRO_PRICE,
    )
    Provider.objects.filter(pk=route.provider.pk).update(options=HIGGSFIELD_OPTIONS)
    return route


def stability(url: str, model: str = "stable-image-ultra", upstream: str = "ultra"):
    return make_route(
        model,
        kind="stability",
        base_url=f"{url}/stability",
        upstream=upstream,
        provider_name="Stability AI",
        key=STABILITY_KEY,
        prices=channel_price("stability", upstream),
    )


def submitted(url: str) -> int:
    return httpx.get(f"{url}/healthz").json().get("queue", {}).get("submitted", 0)


def test_higgsfield_makes_an_image_settled_at_its_per_image_price(sandbox, alice):
    route = higgsfield(sandbox)
    job = submit_one(route.model, alice, image_size="2K", aspect_ratio="16:9")
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    assert job.route == route and job.actual_micros == 150_000 and job.upstream_id
    assert job.image.width > job.image.height and min(job.image.width, job.image.height) == 2048
    assert submitted(sandbox) == 1
    assert quotas.ledger_problems() == []


def test_higgsfield_takes_a_reference_through_the_mapped_field(sandbox, alice):
    route = higgsfield(sandbox)
    job = submit_one(route.model, alice, image_size="1K", reference_bytes=[png_bytes()])
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    assert quotas.ledger_problems() == []


def test_an_nsfw_answer_at_higgsfield_fails_plainly_and_is_refunded(sandbox, alice):
    route = higgsfield(sandbox)
    job = run_until_done(submit_one(route.model, alice, prompt="a cat [sandbox:blocked]"))
    assert (job.status, job.error_kind, job.refunded) == ("failed", "blocked", True)
    assert quotas.summary(alice).reserved_month == 0
    assert quotas.ledger_problems() == []


def test_a_full_higgsfield_queue_is_waited_out_and_then_served(sandbox, alice):
    route = higgsfield(sandbox)
    job = run_until_done(submit_one(route.model, alice, prompt="a cat [sandbox:429x1]"))
    assert job.status == "succeeded", job.error_message
    assert [a.outcome for a in job.attempt_log.all()] == ["rate_limited", "ok"]
    assert quotas.ledger_problems() == []


def test_wrong_higgsfield_options_fail_over_with_the_reason(sandbox, alice):
    route = higgsfield(sandbox)
    Provider.objects.filter(pk=route.provider.pk).update(options={"fields": {"text": "prompt"}})
    job = run_until_done(submit_one(route.model, alice, image_size="1K"))
    assert job.status == "failed" and job.refunded
    attempt = job.attempt_log.first()
    assert (
        attempt.outcome == "refused" and "options are wrong" in attempt.detail + job.error_message
    )
    assert quotas.ledger_problems() == []


@pytest.mark.parametrize(
    ("model", "upstream", "micros"),
    [
        ("stable-image-ultra", "ultra", 80_000),
        ("stable-image-core", "core", 30_000),
        ("sd-3-5-large", "sd3.5-large", 65_000),
    ],
)
def test_stability_makes_an_image_at_its_credit_price(sandbox, alice, model, upstream, micros):
    route = stability(sandbox, model, upstream)
    job = run_until_done(submit_one(route.model, alice, aspect_ratio="21:9"))
    assert job.status == "succeeded", job.error_message
    assert job.actual_micros == micros and job.image.width > 2 * job.image.height
    assert quotas.ledger_problems() == []


def test_stability_image_to_image_from_one_reference(sandbox, alice):
    route = stability(sandbox)
    job = submit_one(route.model, alice, reference_bytes=[png_bytes(width=200, height=100)])
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    assert job.image.width > job.image.height
    assert quotas.ledger_problems() == []


@pytest.mark.parametrize("trigger", ["blocked", "image_safety"])
def test_stability_moderation_fails_plainly_and_is_refunded(sandbox, alice, trigger):
    route = stability(sandbox)
    job = run_until_done(submit_one(route.model, alice, prompt=f"a cat [sandbox:{trigger}]"))
    assert (job.status, job.error_kind, job.refunded) == ("failed", "blocked", True)
    assert quotas.summary(alice).reserved_month == 0
    assert quotas.ledger_problems() == []


def test_a_broke_stability_key_rests_and_the_job_is_refunded(alice):
    config = SandboxConfig(broke_keys=frozenset({STABILITY_KEY}))
    with running_sandbox(config) as url:
        route = stability(url)
        job = run_until_done(submit_one(route.model, alice))
    assert job.status == "failed" and job.refunded
    assert job.attempt_log.first().outcome == "out_of_credit"
    assert quotas.ledger_problems() == []


def test_the_admin_connection_test_speaks_to_each_channel(sandbox):
    for route in (higgsfield(sandbox), stability(sandbox)):
        (result,) = discovery.test_connection(route.provider)
        assert result.ok and "The key works" in result.message
