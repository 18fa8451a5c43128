"""The response builders, as pure functions."""

from __future__ import annotations

import random

import pytest

from generations.sandbox import responses
from tests.generations.sandbox.client import FLASH, PRO


@pytest.mark.parametrize(
    ("seconds", "wire"),
    [(1.5, "1.500s"), (26, "26s"), (59.9994, "59.999s"), (0.0004, "0s"), (3600.0, "3600s")],
)
def test_it_writes_durations_as_protobuf_json(seconds, wire):
    assert responses.duration(seconds) == wire


def test_it_builds_the_429_google_sends():
    error = responses.rate_limited_body(FLASH, 1.5, limit=10)["error"]
    assert (error["code"], error["status"]) == (429, "RESOURCE_EXHAUSTED")
    quota, help_, retry = error["details"]
    assert quota["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    assert quota["violations"] == [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": FLASH},
            "quotaValue": "10",
        }
    ]
    assert help_["@type"] == "type.googleapis.com/google.rpc.Help"
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.500s"}
    assert "Please retry in 1.500s." in error["message"]


def test_it_keeps_the_prompt_usage_when_a_prompt_is_blocked():
    body = responses.prompt_blocked_body(PRO, "x" * 20, references=1, rng=random.Random(1))
    assert body["usageMetadata"] == {
        "promptTokenCount": 263,
        "totalTokenCount": 263,
        "promptTokensDetails": [
            {"modality": "IMAGE", "tokenCount": 258},
            {"modality": "TEXT", "tokenCount": 5},
        ],
    }


def test_it_bills_thinking_even_when_no_image_comes_back():
    body = responses.no_content_body(PRO, "x" * 8, "NO_IMAGE", rng=random.Random(1))
    usage = body["usageMetadata"]
    assert body["candidates"] == [
        {"content": {"role": "model"}, "finishReason": "NO_IMAGE", "index": 0}
    ]
    assert usage["totalTokenCount"] == 2 + usage["thoughtsTokenCount"]
    assert "candidatesTokenCount" not in usage


def test_it_repeats_itself_given_the_same_random_source():
    def build():
        return responses.image_body(PRO, "a fox", b"img", rng=random.Random(42))

    assert build() == build()
