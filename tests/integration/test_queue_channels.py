"""Queue-style channels with real Celery workers: a chaos run through fal.ai, Replicate
and Gemini routes, a worker killed while 20 requests wait at fal, and webhooks from the
sandbox reaching a live server. Runs on whichever broker is configured."""

import os
import signal
import time
from collections import Counter

import httpx
import pytest
from django.utils import timezone

from accounts import quotas
from accounts.models import LedgerEntry
from generations import engine, jobs, queue
from generations.models import Generation, Image, Provider, ProviderKey, Route, WebhookDelivery
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import job_request, make_route, make_user, route_sandbox, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

NB2_PRICE = {"per_image": {"1K": 80_000, "2K": 120_000, "4K": 160_000}}
FAST_POLLS = {"NANOWEB_POLL_MIN_SECONDS": "0.2", "NANOWEB_POLL_MAX_SECONDS": "1"}
CHAOS = {
    "rate_limit": 0.08,
    "unavailable": 0.08,
    "timeout": 0.03,
    "malformed": 0.02,
    "image_safety": 0.01,
    "slow_queue": 0.05,
}


def counters(url: str) -> dict:
    return httpx.get(f"{url}/healthz", timeout=10).json().get("queue", {})


def queue_route(url: str, kind: str, upstream: str, priority: int, key: str) -> Route:
    base = {"fal": f"{url}/fal", "replicate": f"{url}/replicate/v1"}[kind]
    return make_route(
        "sandbox",
        kind=kind,
        base_url=base,
        upstream=upstream,
        provider_name=f"{kind} (sandbox)",
        priority=priority,
        key=key,
        prices=NB2_PRICE,
    )


@pytest.mark.worker(concurrency=4)
def test_two_hundred_images_through_fal_replicate_and_gemini_in_chaos(settings, start_worker):
    config = SandboxConfig(
        rates=CHAOS,
        hang_seconds=3,
        latency_min=0.01,
        latency_max=0.05,
        queue_latency=(0.1, 0.4),
        queue_concurrency=8,
        slow_queue_seconds=1.0,
        broke_keys=frozenset({"fal-broke-0123456789"}),
    )
    with running_sandbox(config) as url:
        model = route_sandbox(url, settings)
        Route.objects.filter(model=model).update(priority=30)  # Gemini last
        fal = queue_route(url, "fal", "fal-ai/nano-banana-2", 10, "fal-broke-0123456789")
        good = ProviderKey(provider=fal.provider, label="second")
        good.set_key("fal-good-0123456789")
        good.save()
        queue_route(url, "replicate", "google/nano-banana-2", 20, "r8_sandbox0123456789")
        Provider.objects.update(read_timeout=1.0, connect_timeout=1.0)
        start_worker(4, **FAST_POLLS)
        user = make_user("chaos@example.com", daily_image_limit=None, monthly_budget_micros=None)
        for i in range(200):  # one prompt per image: the sandbox counts submits by prompt
            jobs.submit(user, job_request(model, prompt=f"chaos {i}", image_size="1K"))

        def settled():
            engine.reconcile()
            return not Generation.objects.in_flight().exists()

        wait_for(
            settled,
            timeout=420,
            interval=1,
            message=f"jobs still in flight: {Generation.objects.in_flight().count()}",
        )
        stats = counters(url)

    rows = list(Generation.objects.select_related("route__provider"))
    outcome = Counter((g.status, g.error_kind) for g in rows)
    failed = [g for g in rows if g.status != "succeeded"]
    assert all(g.error_kind == "blocked" for g in failed), outcome
    assert all(g.refunded for g in failed)
    assert len(failed) < 10
    kinds = Counter(g.route.provider.kind for g in rows if g.status == "succeeded")
    assert kinds["fal"] and kinds["replicate"], kinds  # chaos moved jobs between channels
    # Nothing paid twice: each image settled once, and no request went upstream again
    # while one was pending (a second submit always follows a failed attempt).
    assert LedgerEntry.objects.filter(kind="settle").count() == outcome[("succeeded", "")]
    queued_kinds = ("fal", "replicate")
    attempts = Counter(
        g.prompt
        for g in rows
        for a in g.attempt_log.select_related("route__provider")
        if a.route and a.route.provider.kind in queued_kinds and a.outcome != "cancelled"
    )
    for prompt, submits in stats["submitted_by_prompt"].items():
        assert submits <= attempts[prompt], (prompt, submits, attempts[prompt])
    s = quotas.summary(user)
    assert s.reserved_month == 0
    assert s.spent_month == sum(g.actual_micros for g in rows if g.status == "succeeded")
    assert quotas.ledger_problems() == []
    calls = Counter(a.outcome for g in rows for a in g.attempt_log.all())
    assert calls["rate_limited"] and calls["transient"] and calls["out_of_credit"], calls
    broke = ProviderKey.objects.get(provider=fal.provider, label="primary")
    assert broke.enabled and broke.exhausted_until > timezone.now()


def test_a_worker_killed_while_twenty_requests_wait_at_fal_submits_none_twice(
    settings, start_worker
):
    settings.NANOWEB_REQUEUE_AFTER_SECONDS = 3  # what the test's reconcile calls use
    config = SandboxConfig(queue_latency=(6.0, 6.0), queue_concurrency=20)
    with running_sandbox(config) as url:
        route = make_route(
            "sandbox",
            kind="fal",
            base_url=f"{url}/fal",
            upstream="fal-ai/nano-banana-2",
            provider_name="fal (sandbox)",
            prices=NB2_PRICE,
        )
        user = make_user("crash@example.com", daily_image_limit=None, monthly_budget_micros=None)
        doomed = start_worker(2, NANOWEB_JOB_LEASE_SECONDS=6, **FAST_POLLS)
        for i in range(20):
            jobs.submit(user, job_request(route.model, prompt=f"survivor {i}", image_size="1K"))
        wait_for(
            lambda: Generation.objects.exclude(upstream_id="").count() == 20,
            timeout=60,
            message="the 20 requests never reached fal",
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # with their poll countdowns in its hands
        doomed.wait(timeout=10)
        assert Generation.objects.in_flight().count() == 20

        start_worker(2, purge=False, NANOWEB_JOB_LEASE_SECONDS=6, **FAST_POLLS)

        def finished():
            engine.reconcile()  # what beat does every minute
            return Generation.objects.filter(status="succeeded").count() == 20

        wait_for(finished, timeout=120, interval=0.5, message="the jobs never finished")
        time.sleep(2)  # let any duplicate delivery run and prove harmless
        stats = counters(url)

    assert stats["submitted"] == 20
    assert set(stats["submitted_by_prompt"].values()) == {1}
    for job in Generation.objects.all():
        assert job.attempts == 1
        assert Image.objects.filter(generation=job).count() == 1
        assert LedgerEntry.objects.filter(generation=job, kind="settle").count() == 1
    s = quotas.summary(user)
    assert (s.images_today, s.reserved_month) == (20, 0)
    assert quotas.ledger_problems() == []


def test_webhooks_from_replicate_wake_jobs_and_polling_covers_lost_ones(
    live_server, settings, monkeypatch
):
    woken = []
    monkeypatch.setattr(queue, "enqueue", lambda ids, countdown=None: woken.extend(ids))
    settings.NANOWEB_BASE_URL = live_server.url
    # Longer than Replicate's Prefer: wait, so the prediction is still running when the
    # submit returns and only the webhook (or a poll) can say it is done.
    config = SandboxConfig(queue_latency=(6.5, 6.5), queue_concurrency=8)
    with running_sandbox(config) as url:
        route = make_route(
            "sandbox",
            kind="replicate",
            base_url=f"{url}/replicate/v1",
            upstream="google/nano-banana-2",
            provider_name="Replicate (sandbox)",
            key="r8_sandbox0123456789",
            prices=NB2_PRICE,
        )
        secret = httpx.get(
            f"{url}/replicate/v1/webhooks/default/secret",
            headers={"authorization": "Bearer r8_sandbox0123456789"},
        ).json()["key"]
        provider = route.provider
        provider.webhooks = True
        provider.set_webhook_secret(secret)
        provider.save()
        user = make_user("hooks@example.com")
        (job,) = jobs.submit(user, job_request(route.model, prompt="call me", image_size="1K"))
        woken.clear()
        engine.run_generation(job.pk)
        job.refresh_from_db()
        assert job.upstream_id and job.status == "queued"
        wait_for(lambda: job.pk in woken, timeout=20, message="no webhook woke the job")
        job.refresh_from_db()
        assert job.next_attempt_at <= timezone.now()
        assert WebhookDelivery.objects.filter(upstream_id=job.upstream_id).exists()
        assert engine.run_generation(job.pk) is None  # the woken poll fetches the result
        job.refresh_from_db()
        assert job.status == "succeeded"
