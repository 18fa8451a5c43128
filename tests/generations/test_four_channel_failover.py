"""One job across four kinds of channel: the first three fail each in its own way and
the fourth makes the image; each failure is classified once and acted on (a broke key
rests, a refused key is disabled, a misconfigured route is skipped), the money is right
and no key reaches a log."""

import logging
import time

import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine
from generations.models import Generation, Provider, ProviderKey
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import make_route, make_user, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]

PRICE = {"per_image": {"1K": 120_000, "2K": 120_000, "4K": 240_000}}
KEYS = {
    "leonardo": "leo-BROKE-key-0123456789",
    "freepik": "fp-REVOKED-key-0123456789",
    "higgsfield": "hig-id-0123:hig-SECRET-456789",
    "fal": "fal-GOOD-key-0123456789",
}
UPSTREAM = {
    "leonardo": "gemini-image-2",
    "freepik": "text-to-image/nano-banana-pro",
    "higgsfield": "sandbox/nano-banana-pro",
    "fal": "fal-ai/nano-banana-pro",
}


def run_until_done(job, timeout: float = 30.0) -> Generation:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        Generation.objects.filter(pk=job.pk).update(next_attempt_at=timezone.now())
        if engine.run_generation(job.pk) is None:
            job.refresh_from_db()
            if job.is_finished:
                return job
        time.sleep(0.1)
    raise AssertionError("the job never finished")


def test_three_channels_fail_in_their_own_ways_and_the_fourth_serves(caplog):
    caplog.set_level(logging.DEBUG)
    config = SandboxConfig(
        broke_keys=frozenset({KEYS["leonardo"]}),
        invalid_keys=frozenset({KEYS["freepik"]}),
        queue_latency=(0.1, 0.1),
    )
    alice = make_user("alice@example.com")
    with running_sandbox(config) as url:
        routes = {}
        for priority, kind in enumerate(["leonardo", "freepik", "higgsfield", "fal"], 1):
            routes[kind] = make_route(
                "nano-banana-pro",
                kind=kind,
                base_url=f"{url}/{kind}" if kind != "fal" else f"{url}/fal",
                upstream=UPSTREAM[kind],
                provider_name=kind,
                key=KEYS[kind],
                prices=PRICE,
                priority=priority,
            )
        # Higgsfield's schemas are the admin's to map; this one names no prompt field.
        Provider.objects.filter(name="higgsfield").update(options={"fields": {"seed": "seed"}})
        job = run_until_done(submit_one(routes["fal"].model, alice))

    assert job.status == "succeeded", job.error_message
    assert job.route == routes["fal"] and job.actual_micros == 120_000
    outcomes = [(a.route.provider.kind, a.outcome) for a in job.attempt_log.order_by("number")]
    assert outcomes == [
        ("leonardo", "out_of_credit"),
        ("freepik", "key_invalid"),
        ("higgsfield", "refused"),
        ("fal", "ok"),
    ]
    leonardo_key = ProviderKey.objects.get(provider__name="leonardo")
    assert leonardo_key.exhausted_until > timezone.now() and leonardo_key.enabled
    assert not ProviderKey.objects.get(provider__name="freepik").enabled
    assert quotas.ledger_problems() == []
    details = " ".join(a.detail for a in job.attempt_log.all()) + job.error_message
    for key in KEYS.values():
        for secret in key.split(":"):
            assert secret not in caplog.text and secret not in details
