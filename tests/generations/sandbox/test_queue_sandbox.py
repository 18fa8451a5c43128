"""What the channel protocols share: the queue, the file store, the new fault classes on
the direct APIs, the config and the management command's new flags."""

from __future__ import annotations

import time

import pytest
from django.core.management import CommandError

from generations.sandbox.queue import FileStore, Scheduler
from generations.sandbox.server import SandboxConfig, running_sandbox
from generations.sandbox.state import ALL_FAULTS, CHANNEL_FAULTS, FAULTS, TRIGGERS
from nanoweb.management.commands.sandbox_upstream import Command
from tests.generations.sandbox.channels import fal_submit
from tests.generations.sandbox.client import FLASH, generate, http
from tests.generations.sandbox.test_openai_sandbox import error_of, images
from tests.generations.sandbox.test_replicate_sandbox import create, problem_of

# --- the scheduler and the file store ----------------------------------------------------


def test_the_scheduler_runs_a_lane_fifo_on_its_slots():
    scheduler = Scheduler(concurrency=2)
    lane = ("fal", "k")
    starts = [scheduler.reserve(lane, 0.0, seq, 1.0) for seq in range(5)]
    assert starts == [(0.0, 1.0), (0.0, 1.0), (1.0, 2.0), (1.0, 2.0), (2.0, 3.0)]
    assert [scheduler.position(lane, seq, 0.0) for seq in (2, 3, 4)] == [0, 1, 2]
    scheduler.leave(lane, 2)
    assert scheduler.position(lane, 4, 0.0) == 1
    assert scheduler.position(lane, 4, 1.5) == 0
    # Another lane does not wait behind this one.
    assert scheduler.reserve(("fal", "other"), 0.0, 9, 1.0) == (0.0, 1.0)


def test_the_file_store_forgets_old_files_and_keeps_within_its_size():
    now = [100.0]
    files = FileStore(ttl=10, max_bytes=10, clock=lambda: now[0])
    first = files.put(b"12345", "png", "image/png")
    second = files.put(b"67890", "png", "image/png")
    assert files.get(first) == (b"12345", "image/png")
    third = files.put(b"abc", "png", "image/png")  # 13 bytes: the oldest goes
    assert files.get(first) is None and files.get(second) and files.get(third)
    now[0] += 10
    assert files.get(second) is None and files.get(third) is None
    backdated = files.put(b"x", "png", "image/png", made=now[0] - 20)
    assert files.get(backdated) is None


def test_an_unknown_file_is_not_found(sandbox_url):
    assert http.get(f"{sandbox_url}/files/nothing.png").status_code == 404


def test_healthz_leaves_out_the_queue_until_a_channel_is_used(sandbox_url):
    assert "queue" not in http.get(f"{sandbox_url}/healthz").json()


# --- fault classes -------------------------------------------------------------------------


def test_the_new_fault_classes_have_triggers_and_rates():
    assert set(CHANNEL_FAULTS) == {"out_of_credit", "saturated", "slow_queue", "capacity"}
    assert ALL_FAULTS == FAULTS + CHANNEL_FAULTS
    assert TRIGGERS["credit"] == "out_of_credit" and TRIGGERS["slow"] == "slow_queue"
    assert SandboxConfig(rates={"saturated": 0.5, "capacity": 0.5}).rates["capacity"] == 0.5


@pytest.mark.parametrize(
    "config",
    [
        {"queue_latency": (1.0, 0.5)},
        {"queue_concurrency": 0},
        {"lose_webhooks": 1.5},
        {"chat_image_style": "inline"},
        {"replicate_webhook_secret": "secret"},
        {"rates": {"meltdown": 0.1}},
    ],
)
def test_it_refuses_impossible_channel_settings(config):
    with pytest.raises(ValueError):
        SandboxConfig(**config)


GEMINI = {"credit": 429, "saturated": 503, "capacity": 503, "slow_queue": 200}


@pytest.mark.parametrize("trigger", GEMINI)
def test_gemini_answers_the_new_classes_with_its_nearest_forms(trigger):
    with running_sandbox(SandboxConfig(slow_queue_seconds=0.3)) as url:
        started = time.monotonic()
        response = generate(url, FLASH, prompt=f"a boat [sandbox:{trigger}]")
        took = time.monotonic() - started
    assert response.status_code == GEMINI[trigger]
    if trigger == "credit":
        quota = response.json()["error"]["details"][0]["violations"][0]["quotaId"]
        assert quota.startswith("GenerateRequestsPerDay")
    if trigger == "slow_queue":
        assert took >= 0.3 and response.json()["candidates"][0]["finishReason"] == "STOP"


OPENAI = {
    "credit": (429, "insufficient_quota"),
    "saturated": (503, "server_error"),
    "capacity": (503, "server_error"),
}


@pytest.mark.parametrize("trigger", OPENAI)
def test_openai_images_answers_the_new_classes_with_its_nearest_forms(sandbox_url, trigger):
    status, kind = OPENAI[trigger]
    error = error_of(images(sandbox_url, prompt=f"a boat [sandbox:{trigger}]"), status)
    assert error["type"] == kind


def test_a_broke_key_is_out_of_credit_on_the_direct_apis_too():
    with running_sandbox(SandboxConfig(broke_keys=frozenset({"test-key-0123456789"}))) as url:
        assert generate(url, FLASH).status_code == 429
        assert error_of(images(url), 429)["type"] == "insufficient_quota"


# --- the management command ----------------------------------------------------------------


def config_from(*argv: str) -> SandboxConfig:
    command = Command()
    options = vars(command.create_parser("manage.py", "sandbox_upstream").parse_args(argv))
    return command.build_config(options)


def test_the_command_takes_the_channel_flags():
    config = config_from(
        "--rate-credit", "0.1", "--rate-saturated", "0.1", "--rate-slow-queue", "0.05",
        "--rate-capacity", "0.05", "--queue-latency", "1-3", "--queue-concurrency", "2",
        "--lose-webhooks", "0.25", "--chat-image-style", "link", "--broke-key", "k1",
        "--broke-key", "k2", "--slow-queue-seconds", "9", "--file-ttl", "60",
    )  # fmt: skip
    assert config.rates == {
        "out_of_credit": 0.1,
        "saturated": 0.1,
        "slow_queue": 0.05,
        "capacity": 0.05,
    }
    assert (config.queue_latency, config.queue_concurrency) == ((1.0, 3.0), 2)
    assert (config.lose_webhooks, config.chat_image_style) == (0.25, "link")
    assert config.broke_keys == {"k1", "k2"}
    assert (config.slow_queue_seconds, config.file_ttl) == (9.0, 60.0)
    described = Command.describe(config)
    assert "queue 1-3s x2 per key" in described and "25% of webhooks lost" in described


def test_the_command_defaults_to_a_quick_queue():
    config = config_from()
    assert (config.queue_latency, config.queue_concurrency) == ((0.2, 0.5), 4)
    assert (config.lose_webhooks, config.chat_image_style, config.broke_keys) == (
        0.0,
        "data",
        frozenset(),
    )


@pytest.mark.parametrize(
    "argv",
    [
        ("--queue-latency", "later"),
        ("--lose-webhooks", "2"),
        ("--queue-concurrency", "0"),
        ("--chat-image-style", "inline"),
    ],
)
def test_the_command_refuses_impossible_channel_settings(argv):
    with pytest.raises((CommandError, SystemExit)):
        config_from(*argv)


def test_a_key_over_its_rpm_is_throttled_on_the_queue_apis_too():
    with running_sandbox(SandboxConfig(rpm=1)) as url:
        assert fal_submit(url).status_code == 200
        assert fal_submit(url).status_code == 429
        assert create(url, key="r8_other").status_code == 201
        throttled = create(url, key="r8_other")
        problem_of(throttled, 429)
        assert 50 <= int(throttled.headers["retry-after"]) <= 60
