"""Admins can see why a route or a key is resting."""

import re

import pytest
from django.utils import timezone

from generations import jobs
from generations.models import Attempt, ProviderKey
from generations.resilience import health, limiter
from generations.resilience.store import get_store
from generations.resilience.types import BreakerConfig, Limits, day_bounds
from tests.factories import job_request, make_route, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_the_health_page_explains_resting_routes_and_keys(admin_client, alice, no_broker):
    route = make_route("nano-banana", provider_name="Google")
    route.provider.rpm = 10
    route.provider.save()
    cfg = BreakerConfig.from_settings()
    for _ in range(cfg.consecutive):
        get_store().breaker_record(route.pk, False, cfg)
    key = route.provider.keys.get()
    limiter.acquire(key.pk, Limits.of(route.provider))
    broken = ProviderKey(
        provider=route.provider,
        label="old",
        enabled=False,
        disabled_reason="API key not valid. Please pass a valid API key.",
    )
    broken.set_key("AIza-old-key-0000000000")
    broken.save()
    tired = ProviderKey(
        provider=route.provider,
        label="tired",
        exhausted_until=timezone.now() + timezone.timedelta(hours=3),
    )
    tired.set_key("AIza-tired-key-000000000")
    tired.save()
    job = jobs.submit(alice, job_request(route.model))[0]
    Attempt.objects.create(
        generation=job,
        number=1,
        route=route,
        key_label="primary",
        outcome="transient",
        http_status=503,
    )
    Attempt.objects.create(
        generation=job, number=2, route=route, key_label="primary", outcome="ok", http_status=200
    )

    page = admin_client.get("/admin/generations/provider/health/").content.decode()
    assert "open for" in page
    assert "disabled: API key not valid" in page
    assert "daily quota used up; resting until" in page
    assert "1 / 10" in page  # one call in this minute's window of 10
    assert "transient 1" in page and "50 %" in page
    # never a key, only its hint (the whole key: a bare "AIza" could be in a CSRF token)
    assert "AIza-old-key-0000000000" not in page and "AIza-tired-key-000000000" not in page


def test_the_health_page_is_for_staff_only(client, alice):
    client.force_login(alice)
    response = client.get("/admin/generations/provider/health/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_provider_list_links_to_health(admin_client):
    page = admin_client.get("/admin/generations/provider/").content.decode()
    assert "/admin/generations/provider/health/" in page


def test_a_key_without_rate_limits_counts_the_calls_it_made_this_minute_and_today(
    admin_client, alice, no_broker
):
    route = make_route("nano-banana", provider_name="Google")  # no RPM, RPD or concurrency
    job = jobs.submit(alice, job_request(route.model))[0]
    now = timezone.now()
    day_start = day_bounds(now)[0]
    times = [
        now,
        now - timezone.timedelta(seconds=5),
        now - timezone.timedelta(minutes=5),
        day_start - timezone.timedelta(minutes=1),
    ]  # the last one was yesterday
    for number, started in enumerate(times, 1):
        Attempt.objects.create(
            generation=job,
            number=number,
            route=route,
            key_label="primary",
            outcome="ok",
            http_status=200,
            started=started,
        )
    today = sum(t >= day_start for t in times)

    [key] = health.report()[1]
    assert key.usage == {"minute": 2, "day": today, "in_flight": None}
    page = admin_client.get("/admin/generations/provider/health/").content.decode()
    row = page[page.index("<td>primary") :]
    assert re.search(rf"<td>ready</td>\s*<td>2</td>\s*<td>{today}</td>\s*<td>—</td>", row)
