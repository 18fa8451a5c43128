"""Keys and quotas: missing and invalid keys, per-key RPM and daily quota."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from generations.sandbox.server import running_sandbox
from generations.sandbox.state import SandboxConfig, SandboxState
from tests.generations.sandbox.client import FLASH, generate


def text(url: str, key: str = "key-a"):
    # Text-only answers keep these tests fast: quotas do not care what is made.
    return generate(url, key=key, modalities=["TEXT"])


def quota_violation(response) -> dict:
    return response.json()["error"]["details"][0]["violations"][0]


def retry_seconds(response) -> float:
    return float(response.json()["error"]["details"][2]["retryDelay"].removesuffix("s"))


def test_it_denies_a_request_without_a_key(sandbox_url):
    response = generate(sandbox_url, key=None)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["status"] == "PERMISSION_DENIED"
    assert "unregistered callers" in error["message"]


def test_it_refuses_a_key_listed_as_invalid():
    with running_sandbox(SandboxConfig(invalid_keys={"revoked"})) as url:
        refused, accepted = text(url, key="revoked"), text(url, key="fine")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["status"], error["message"]) == (
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
    )
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    assert accepted.status_code == 200


def test_it_enforces_requests_per_minute_per_key():
    with running_sandbox(SandboxConfig(rpm=2)) as url:
        statuses = [text(url).status_code for _ in range(2)]
        refused = text(url)
        other_key = text(url, key="key-b")
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert quota_violation(refused)["quotaId"] == (
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    )
    assert quota_violation(refused)["quotaValue"] == "2"
    assert 55 < retry_seconds(refused) <= 60
    assert other_key.status_code == 200


def test_it_enforces_a_daily_quota_per_key():
    with running_sandbox(SandboxConfig(daily_quota=1)) as url:
        first, second = text(url), text(url)
    assert first.status_code == 200
    assert second.status_code == 429
    assert quota_violation(second)["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert f"model: {FLASH}" in second.json()["error"]["message"]


class Clocks:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)


def state(clocks: Clocks, **config) -> SandboxState:
    return SandboxState(SandboxConfig(**config), clock=lambda: clocks.now, wall=lambda: clocks.wall)


def test_it_frees_a_minute_slot_as_the_window_slides():
    clocks = Clocks()
    quotas = state(clocks, rpm=2)
    assert quotas.admit("k", FLASH) is None
    clocks.now += 20
    assert quotas.admit("k", FLASH) is None
    clocks.now += 10
    refused = quotas.admit("k", FLASH)
    assert refused.status == 429
    assert b'"retryDelay": "30s"' in refused.body  # until the first call leaves the window
    clocks.now += 30
    assert quotas.admit("k", FLASH) is None


def test_it_resets_the_daily_quota_at_utc_midnight():
    clocks = Clocks()
    quotas = state(clocks, daily_quota=1)
    assert quotas.admit("k", FLASH) is None
    refused = quotas.admit("k", FLASH)
    assert (refused.status, refused.outcome) == (429, "daily_quota")
    assert b'"retryDelay": "3600s"' in refused.body
    clocks.wall = datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)
    assert quotas.admit("k", FLASH) is None


def test_it_does_not_count_refused_requests_against_the_minute():
    clocks = Clocks()
    quotas = state(clocks, rpm=1)
    assert quotas.admit("k", FLASH) is None
    for _ in range(5):
        clocks.now += 10
        assert quotas.admit("k", FLASH) is not None
    clocks.now += 10
    assert quotas.admit("k", FLASH) is None


def test_it_admits_exactly_rpm_requests_when_they_arrive_together():
    with running_sandbox(SandboxConfig(rpm=5)) as url, ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(lambda _: text(url).status_code, range(20)))
    assert sorted(statuses) == [200] * 5 + [429] * 15
