"""Injected faults: by prompt trigger, by rate, and counted (``[sandbox:503x2]``)."""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image

from generations.sandbox.server import running_sandbox
from generations.sandbox.state import FAULTS, SandboxConfig
from tests.generations.sandbox.client import FLASH, PRO, generate, parts

TRIGGERS = {
    "rate_limit": "429",
    "daily_quota": "daily",
    "unavailable": "503",
    "internal": "500",
    "region": "region",
    "deadline": "504",
    "malformed": "malformed",
    "truncated": "truncated",
    "prompt_block": "blocked",
    "image_safety": "image_safety",
    "no_image": "no_image",
    "text_only": "text_only",
}


def assert_answers_with(fault: str, response: httpx.Response) -> None:
    """What a client sees for each fault class."""
    expected_status = {
        "rate_limit": 429,
        "daily_quota": 429,
        "unavailable": 503,
        "internal": 500,
        "region": 400,
        "deadline": 504,
    }.get(fault, 200)
    assert response.status_code == expected_status
    if fault == "malformed":
        with pytest.raises(json.JSONDecodeError):
            response.json()
        return
    body = response.json()
    if expected_status != 200:
        error = body["error"]
        assert error["code"] == expected_status
        assert (
            error["status"]
            == {
                429: "RESOURCE_EXHAUSTED",
                503: "UNAVAILABLE",
                500: "INTERNAL",
                400: "FAILED_PRECONDITION",
                504: "DEADLINE_EXCEEDED",
            }[expected_status]
        )
        if fault == "unavailable":
            assert error["message"] == "The model is overloaded. Please try again later."
        if expected_status == 429:
            quota_id = error["details"][0]["violations"][0]["quotaId"]
            per = "PerDay" if fault == "daily_quota" else "PerMinute"
            assert quota_id == f"GenerateRequests{per}PerProjectPerModel-FreeTier"
        return
    if fault == "prompt_block":
        assert body["promptFeedback"] == {"blockReason": "PROHIBITED_CONTENT"}
        assert "candidates" not in body
        return
    candidate = body["candidates"][0]
    if fault in ("image_safety", "no_image"):
        assert candidate["finishReason"] == fault.upper()
        assert "parts" not in candidate["content"]
        return
    assert candidate["finishReason"] == "STOP"
    if fault == "text_only":
        assert [p["text"] != "" for p in candidate["content"]["parts"]] == [True]
        return
    assert fault == "truncated"
    data = base64.b64decode(parts(response)[-1]["inlineData"]["data"], validate=True)
    with pytest.raises(OSError), Image.open(io.BytesIO(data)) as image:
        image.load()


@pytest.mark.parametrize("fault", sorted(TRIGGERS))
def test_it_answers_a_prompt_trigger_with_its_fault(sandbox_url, fault):
    response = generate(sandbox_url, FLASH, prompt=f"a boat [sandbox:{TRIGGERS[fault]}]")
    assert_answers_with(fault, response)


@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "timeout"])
def test_it_answers_every_request_with_a_fault_whose_rate_is_one(fault):
    with running_sandbox(SandboxConfig(rates={fault: 1.0})) as url:
        assert_answers_with(fault, generate(url, PRO))
        assert_answers_with(fault, generate(url, PRO, prompt="something else"))


def test_it_asks_for_a_fractional_retry_delay_on_an_injected_429(sandbox_url):
    error = generate(sandbox_url, prompt="[sandbox:429]").json()["error"]
    assert error["details"][2] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "1.500s",
    }
    assert [d["@type"].rsplit(".", 1)[1] for d in error["details"]] == [
        "QuotaFailure",
        "Help",
        "RetryInfo",
    ]


def test_it_fails_a_counted_trigger_that_many_times_then_succeeds(sandbox_url):
    statuses = [
        generate(sandbox_url, prompt="a boat [sandbox:503x2]").status_code for _ in range(4)
    ]
    assert statuses == [503, 503, 200, 200]
    # The count belongs to the exact prompt: another one starts afresh.
    assert generate(sandbox_url, prompt="a ship [sandbox:503x2]").status_code == 503


def test_it_counts_triggers_of_other_classes_too(sandbox_url):
    first = generate(sandbox_url, prompt="a cat [sandbox:no_imagex1]")
    assert first.json()["candidates"][0]["finishReason"] == "NO_IMAGE"
    assert generate(sandbox_url, prompt="a cat [sandbox:no_imagex1]").status_code == 200


def test_it_refuses_an_unknown_trigger(sandbox_url):
    response = generate(sandbox_url, prompt="a boat [sandbox:418]")
    assert response.status_code == 400
    assert "Unknown sandbox trigger '[sandbox:418]'" in response.json()["error"]["message"]


def test_it_draws_the_same_faults_from_the_same_seed():
    config = SandboxConfig(rates={"unavailable": 0.5}, seed=7)
    runs = []
    for _ in range(2):
        with running_sandbox(config) as url:
            runs.append([generate(url, modalities=["TEXT"]).status_code for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 503}


def test_it_holds_a_timed_out_request_without_answering():
    with running_sandbox(SandboxConfig(hang_seconds=600)) as url:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            generate(url, prompt="[sandbox:timeout]", timeout=0.3)
    # Leaving the block does not wait for the hanging request to finish.
    assert time.monotonic() - started < 3


def test_it_closes_a_timed_out_connection_after_hang_seconds():
    config = SandboxConfig(rates={"timeout": 1.0}, hang_seconds=0.2)
    with running_sandbox(config) as url, pytest.raises(httpx.RemoteProtocolError):
        generate(url, timeout=5)


def test_it_counts_a_trigger_exactly_under_concurrent_requests(sandbox_url):
    def call(_):
        return generate(sandbox_url, prompt="[sandbox:500x3]", modalities=["TEXT"]).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(call, range(10)))
    assert sorted(statuses) == [200] * 7 + [500] * 3
