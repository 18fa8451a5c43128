"""A chaos run: 200 images through two misbehaving upstreams and a real worker.

Both routes answer 10 % 429 (with RetryInfo), 10 % 503, 5 % timeouts, 2 % malformed
bodies, 2 % truncated base64 and 1 % IMAGE_SAFETY. Every image that was not blocked
must arrive; blocked ones fail plainly with their reservation released; the ledger
matches the counters to the micro-dollar; nothing is left queued or running.
"""

from collections import Counter

import pytest

from accounts import quotas
from generations import jobs
from generations.failures import ErrorKind
from generations.models import Generation, Provider
from generations.resilience.backoff import RETRY_BUDGET
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import job_request, make_route, make_user, route_sandbox, wait_for

CHAOS = {
    "rate_limit": 0.10,
    "unavailable": 0.10,
    "timeout": 0.05,
    "malformed": 0.02,
    "truncated": 0.02,
    "image_safety": 0.01,
}

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


@pytest.fixture
def two_chaotic_routes(settings):
    config = SandboxConfig(rates=CHAOS, hang_seconds=3, latency_min=0.01, latency_max=0.05)
    with running_sandbox(config) as first, running_sandbox(config) as second:
        model = route_sandbox(first, settings)
        make_route(
            "sandbox",
            base_url=second,
            provider_name="Second sandbox",
            priority=20,
            key="second-key-0123456789",
        )
        Provider.objects.update(read_timeout=1.0, connect_timeout=1.0)
        yield model


@pytest.mark.worker(concurrency=4)
def test_two_hundred_images_through_chaos(two_chaotic_routes, celery_worker):
    model = two_chaotic_routes
    user = make_user("chaos@example.com", daily_image_limit=None, monthly_budget_micros=None)
    for i in range(50):
        jobs.submit(user, job_request(model, prompt=f"chaos {i}", count=4, image_size="1K"))

    def settled():
        left = Generation.objects.in_flight().count()
        return left == 0

    wait_for(
        settled,
        timeout=300,
        interval=1,
        message=f"jobs still in flight: {Generation.objects.in_flight().count()}",
    )

    rows = list(Generation.objects.all())
    assert len(rows) == 200
    outcome = Counter((g.status, g.error_kind) for g in rows)
    failed = [g for g in rows if g.status != "succeeded"]
    # Besides the blocked prompts, a job may by chance time out more often than its own
    # budget allows (5 % timeouts, budget 2): it then fails as slow, by the rule, refunded.
    slow_budget = RETRY_BUDGET[ErrorKind.SLOW]
    by_chance = [
        g
        for g in failed
        if g.error_kind == "slow" and g.attempt_log.filter(outcome="slow").count() > slow_budget
    ]
    blocked = [g for g in failed if g not in by_chance]
    assert all(g.error_kind == "blocked" for g in blocked), outcome
    assert all(g.refunded and "safety" in g.error_message.lower() for g in blocked)
    assert all(g.refunded for g in by_chance)
    assert all(g.image.file for g in rows if g.status == "succeeded")
    s = quotas.summary(user)
    assert s.reserved_month == 0
    assert s.spent_month == sum(g.actual_micros for g in rows if g.status == "succeeded")
    assert s.images_today == outcome[("succeeded", "")]
    assert quotas.ledger_problems() == []
    calls = Counter(a.outcome for g in rows for a in g.attempt_log.all())
    assert calls["rate_limited"] and calls["transient"] and calls["slow"]  # chaos happened
