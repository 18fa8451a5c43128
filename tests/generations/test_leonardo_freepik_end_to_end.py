"""Leonardo.ai and Freepik through the engine, against the sandbox speaking their wire
formats on loopback (no worker: each test drives run_generation() by hand, as the Celery
task would)."""

import logging
import time

import httpx
import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine
from generations.models import Generation, Provider, ProviderKey, Route
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, make_user, png_bytes, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

PRO_PRICE = {"per_image": {"1K": 120_000, "2K": 120_000, "4K": 240_000}}
KEYS = {"leonardo": "leo-SECRET-key-0123456789", "freepik": "fp-SECRET-key-0123456789"}
UPSTREAM = {"leonardo": "gemini-image-2", "freepik": "text-to-image/nano-banana-pro"}


@pytest.fixture
def alice(db):
    return make_user("alice@example.com")


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(queue_latency=(0.2, 0.2), queue_concurrency=4)) as url:
        yield url


def channel(url: str, kind: str, **options) -> Route:
    route = make_route(
        "nano-banana-pro",
        kind=kind,
        base_url=f"{url}/{kind}",
        upstream=UPSTREAM[kind],
        provider_name=kind,
        key=KEYS[kind],
        prices=PRO_PRICE,
    )
    Provider.objects.filter(pk=route.provider_id).update(options=options)
    return route


def counters(url: str) -> dict:
    return httpx.get(f"{url}/healthz").json().get("queue", {})


def run_until_done(job, timeout: float = 20.0) -> Generation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            job.refresh_from_db()
            if job.is_finished:
                return job
        time.sleep(0.1)
    raise AssertionError("the job never finished")


@pytest.mark.parametrize("kind", ["leonardo", "freepik"])
def test_each_makes_an_image_settled_at_its_per_image_price(sandbox, alice, kind, caplog):
    caplog.set_level(logging.DEBUG)
    route = channel(sandbox, kind)
    job = submit_one(route.model, alice, image_size="2K", aspect_ratio="16:9",
                     reference_bytes=[png_bytes()])  # fmt: skip
    job = run_until_done(job)
    assert job.status == "succeeded", job.error_message
    assert job.route == route and job.actual_micros == 120_000
    assert (job.image.width, job.image.height) == (2752, 1536)
    assert quotas.ledger_problems() == []
    assert counters(sandbox)["submitted"] == 1  # one generation upstream, however many polls
    assert KEYS[kind] not in caplog.text


def test_a_ratio_leonardo_does_not_list_is_refused_and_refunded(sandbox, alice, caplog):
    caplog.set_level(logging.DEBUG)
    route = channel(sandbox, "leonardo", sizes={"gemini-image-2": {"1:1": {"1K": [1024, 1024]}}})
    job = run_until_done(submit_one(route.model, alice, image_size="1K", aspect_ratio="16:9"))
    assert (job.status, job.error_kind, job.refunded) == ("failed", "refused", True)
    assert counters(sandbox).get("submitted", 0) == 0  # nothing was sent to be squared
    assert quotas.ledger_problems() == [] and quotas.summary(alice).reserved_month == 0
    assert KEYS["leonardo"] not in caplog.text


@pytest.mark.parametrize("kind", ["leonardo", "freepik"])
def test_a_flagged_image_fails_plainly(sandbox, alice, kind):
    route = channel(sandbox, kind)
    job = run_until_done(submit_one(route.model, alice, prompt="a cat [sandbox:image_safety]"))
    assert (job.status, job.error_kind) == ("failed", "blocked")
    assert quotas.ledger_problems() == []


def test_an_out_of_credit_leonardo_key_rests_and_the_other_key_makes_the_image(alice, caplog):
    caplog.set_level(logging.DEBUG)
    config = SandboxConfig(queue_latency=(0.1, 0.1), broke_keys=frozenset({KEYS["leonardo"]}))
    with running_sandbox(config) as url:
        route = channel(url, "leonardo")
        good = ProviderKey(provider=route.provider, label="second")
        good.set_key("leo-good-key-0123456789")
        good.save()
        job = run_until_done(submit_one(route.model, alice, image_size="1K"))
    assert job.status == "succeeded", job.error_message
    broke = ProviderKey.objects.get(provider=route.provider, label="primary")
    assert broke.exhausted_until > timezone.now()
    assert [a.outcome for a in job.attempt_log.all()] == ["out_of_credit", "ok"]
    assert quotas.ledger_problems() == []
    assert KEYS["leonardo"] not in caplog.text
