"""A route free up to N images a day per key: those images cost nothing, then the
model's priced fallback route serves (against a real sandbox upstream)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import quotas
from generations import engine, routing
from generations.models import Attempt, Generation, ProviderKey, Route
from tests.factories import make_route, submit_one

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def free_route(sandbox_model, sandbox_url) -> Route:
    """A free tier of 2 images a day in front of the Sandbox model's priced route."""
    route = make_route(
        "sandbox",
        base_url=sandbox_url,
        provider_name="Free tier",
        priority=1,
        price=False,
        key="free-key-0123456789",
    )
    route.free_daily_images = 2
    route.save()
    return route


def made_by(user, model, n: int) -> list[Generation]:
    jobs = []
    for i in range(n):
        job = submit_one(model, user, prompt=f"a free fox {i}", image_size="1K")
        assert engine.run_generation(job.pk) is None
        job.refresh_from_db()
        assert job.status == Generation.SUCCEEDED
        jobs.append(job)
    return jobs


def test_n_free_images_a_day_then_the_priced_route_serves(alice, sandbox_model, free_route):
    priced = Route.objects.exclude(pk=free_route.pk).get(model=sandbox_model)
    jobs = made_by(alice, sandbox_model, 3)

    assert [j.route_id for j in jobs] == [free_route.pk, free_route.pk, priced.pk]
    assert [j.actual_micros for j in jobs[:2]] == [0, 0]
    assert jobs[2].actual_micros > 0
    s = quotas.summary(alice)
    assert s.spent_month == jobs[2].actual_micros and s.reserved_month == 0
    assert quotas.ledger_problems() == []


def test_the_free_tier_counts_per_key(alice, sandbox_model, free_route):
    second = ProviderKey(provider=free_route.provider, label="second")
    second.set_key("free-key-second-0123")
    second.save()
    jobs = made_by(alice, sandbox_model, 5)

    assert [j.route_id == free_route.pk for j in jobs] == [True] * 4 + [False]
    used = {
        k.label: routing.free_images_used(free_route, k) for k in free_route.provider.keys.all()
    }
    assert used == {"primary": 2, "second": 2}
    assert quotas.ledger_problems() == []


def test_the_free_images_come_back_after_pacific_midnight(alice, sandbox_model, free_route):
    made_by(alice, sandbox_model, 2)
    key = free_route.provider.keys.get()
    assert not routing.within_free_tier(free_route, key)
    yesterday = routing.free_day_start() - timedelta(minutes=1)
    Attempt.objects.filter(route=free_route).update(started=yesterday)
    assert routing.within_free_tier(free_route, key)


def test_without_a_priced_fallback_the_job_fails_saying_the_free_images_are_used(
    alice, sandbox_model, free_route
):
    Route.objects.exclude(pk=free_route.pk).update(enabled=False)
    made_by(alice, sandbox_model, 2)
    last = submit_one(sandbox_model, alice, prompt="one too many", image_size="1K")
    assert engine.run_generation(last.pk) is None
    last.refresh_from_db()
    assert last.status == Generation.FAILED and last.refunded
    assert "free images" in last.error_message
    assert last.finished <= timezone.now()
    assert quotas.ledger_problems() == []
