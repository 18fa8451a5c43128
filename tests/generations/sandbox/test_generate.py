"""Successful generateContent calls against a real sandbox on loopback."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.client import (
    FLASH,
    FLASH_31,
    KEY,
    LITE,
    NB21,
    PRO,
    generate,
    image_of,
    parts,
    png_b64,
    recorded,
    shape,
)

FLASH_RECORDING = "gemini-2.5-flash-image.text-and-image.json"
PRO_RECORDING = "gemini-3-pro-image-preview.text-and-image.json"


@pytest.mark.parametrize(
    ("model", "recording"),
    [
        (FLASH, FLASH_RECORDING),
        (PRO, PRO_RECORDING),
        (FLASH_31, PRO_RECORDING),
        (NB21, PRO_RECORDING),
        (LITE, PRO_RECORDING),
    ],
)
def test_it_answers_in_the_shape_of_the_recorded_responses(sandbox_url, model, recording):
    response = generate(sandbox_url, model)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=UTF-8"
    assert shape(response.json()) == shape(recorded(recording))
    assert response.json()["modelVersion"] == model


@pytest.mark.parametrize(
    ("model", "image_config", "fmt", "size"),
    [
        (FLASH, {}, "PNG", (1024, 1024)),
        (FLASH, {"aspectRatio": "21:9"}, "PNG", (1536, 672)),
        (FLASH, {"aspectRatio": "3:4"}, "PNG", (864, 1184)),
        # The Gemini 3 models have a 1K table of their own, and four more ratios.
        (PRO, {"aspectRatio": "16:9", "imageSize": "1K"}, "JPEG", (1376, 768)),
        (PRO, {"aspectRatio": "2:3"}, "JPEG", (848, 1264)),
        (FLASH_31, {"aspectRatio": "9:16", "imageSize": "2K"}, "JPEG", (1536, 2752)),
        (FLASH_31, {"aspectRatio": "4:5"}, "JPEG", (928, 1152)),
        (FLASH_31, {"aspectRatio": "16:9", "imageSize": "512"}, "JPEG", (688, 384)),
        (NB21, {}, "JPEG", (1024, 1024)),
        (NB21, {"aspectRatio": "1:8"}, "JPEG", (352, 2928)),
        (NB21, {"aspectRatio": "16:9", "imageSize": "4K"}, "JPEG", (5504, 3072)),
        (LITE, {"aspectRatio": "4:1", "imageSize": "1K"}, "JPEG", (2064, 512)),
        (LITE, {"aspectRatio": "21:9"}, "JPEG", (1584, 672)),
    ],
)
def test_it_renders_the_requested_aspect_ratio_and_size(
    sandbox_url, model, image_config, fmt, size
):
    response = generate(sandbox_url, model, image_config=image_config)
    image = image_of(response)
    assert (image.format, image.size) == (fmt, size)
    mime = parts(response)[-1]["inlineData"]["mimeType"]
    assert mime == f"image/{fmt.lower()}"


def test_it_reports_flash_image_usage_without_thinking(sandbox_url):
    body = generate(sandbox_url, FLASH, prompt="x" * 40).json()
    usage = body["usageMetadata"]
    text = parts_text_tokens(body)
    assert usage["promptTokenCount"] == 10
    assert usage["candidatesTokensDetails"] == [{"modality": "IMAGE", "tokenCount": 1290}]
    assert usage["candidatesTokenCount"] == 1290 + text
    assert usage["totalTokenCount"] == 10 + 1290 + text
    assert "thoughtsTokenCount" not in usage
    assert not any("thoughtSignature" in p for p in body["candidates"][0]["content"]["parts"])


@pytest.mark.parametrize(
    ("model", "size", "image_tokens", "thoughts"),
    [
        (PRO, "1K", 1120, (100, 400)),  # Pro always thinks hard
        (PRO, "2K", 1120, (100, 400)),
        (FLASH_31, "512", 747, (20, 90)),  # 3.1 Flash and Lite default to minimal
        (FLASH_31, "1K", 1120, (20, 90)),
        (FLASH_31, "2K", 1680, (20, 90)),
        (FLASH_31, "4K", 2520, (20, 90)),
        (NB21, "1K", 1120, (120, 400)),  # 2.1 defaults to medium
        (NB21, "2K", 1680, (120, 400)),
        (NB21, "4K", 2520, (120, 400)),
        (LITE, "1K", 1120, (20, 90)),
    ],
)
def test_it_reports_thinking_models_usage_and_signs_every_part(
    sandbox_url, model, size, image_tokens, thoughts
):
    body = generate(sandbox_url, model, image_config={"imageSize": size}).json()
    usage = body["usageMetadata"]
    assert usage["candidatesTokensDetails"] == [{"modality": "IMAGE", "tokenCount": image_tokens}]
    assert usage["candidatesTokenCount"] == image_tokens + parts_text_tokens(body)
    assert thoughts[0] <= usage["thoughtsTokenCount"] <= thoughts[1]
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"] + usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
    )
    signatures = [p["thoughtSignature"] for p in body["candidates"][0]["content"]["parts"]]
    assert len(signatures) == 2
    assert all(re.fullmatch(r"[A-Za-z0-9+/]+=*", s) for s in signatures)


def test_it_bills_4k_pro_images_at_2000_tokens(sandbox_url):
    body = generate(sandbox_url, PRO, image_config={"aspectRatio": "21:9", "imageSize": "4K"})
    usage = body.json()["usageMetadata"]
    assert usage["candidatesTokensDetails"][0]["tokenCount"] == 2000
    assert image_of(body).size == (6336, 2688)


def test_it_counts_reference_images_in_the_prompt(sandbox_url):
    request = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "put the two cats together"},
                    {"inlineData": {"mimeType": "image/png", "data": png_b64()}},
                    {"inlineData": {"mimeType": "image/png", "data": png_b64(color=(1, 2, 3))}},
                ],
            }
        ]
    }
    usage = generate(sandbox_url, PRO, body=request).json()["usageMetadata"]
    assert usage["promptTokensDetails"] == [
        {"modality": "IMAGE", "tokenCount": 516},
        {"modality": "TEXT", "tokenCount": 6},
    ]
    assert usage["promptTokenCount"] == 522


def test_it_accepts_snake_case_requests(sandbox_url):
    request = {
        "contents": [
            {
                "parts": [
                    {"text": "a fox in the snow"},
                    {"inline_data": {"mime_type": "image/png", "data": png_b64()}},
                ]
            }
        ],
        "generation_config": {
            "response_modalities": ["IMAGE"],
            "image_config": {"aspect_ratio": "16:9", "image_size": "2K"},
        },
    }
    response = generate(sandbox_url, FLASH_31, body=request)
    assert response.status_code == 200
    assert image_of(response).size == (2752, 1536)
    assert [list(p) for p in parts(response)] == [["inlineData", "thoughtSignature"]]
    assert response.json()["usageMetadata"]["promptTokensDetails"][0]["tokenCount"] == 258


def test_it_answers_text_only_when_only_text_is_asked_for(sandbox_url):
    response = generate(sandbox_url, FLASH, modalities=["TEXT"])
    assert [list(p) for p in parts(response)] == [["text"]]
    assert "candidatesTokensDetails" not in response.json()["usageMetadata"]


def test_it_takes_the_key_from_the_query_string(sandbox_url):
    response = httpx.post(
        f"{sandbox_url}/v1beta/models/{FLASH}:generateContent?key={KEY}",
        json={"contents": [{"parts": [{"text": "a kite"}]}]},
    )
    assert response.status_code == 200


def test_it_gives_every_response_a_fresh_id(sandbox_url):
    ids = {generate(sandbox_url, modalities=["TEXT"]).json()["responseId"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{23}", i) for i in ids)


def test_it_waits_the_configured_latency():
    with running_sandbox(SandboxConfig(latency_min=0.3, latency_max=0.3)) as url:
        response = generate(url, modalities=["TEXT"])
    assert response.elapsed.total_seconds() >= 0.3


def test_it_logs_one_line_per_request_without_the_key(sandbox_url, caplog):
    caplog.set_level(logging.INFO, logger="generations.sandbox.server")
    httpx.post(
        f"{sandbox_url}/v1beta/models/{FLASH}:generateContent?key=SECRET-in-query",
        json={"contents": [{"parts": [{"text": "a kite"}]}]},
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "generations.sandbox.server"]
    assert len(lines) == 1
    assert f"POST /v1beta/models/{FLASH}:generateContent model={FLASH} status=200" in lines[0]
    assert "SECRET" not in caplog.text


def test_it_reports_its_health(sandbox_url):
    generate(sandbox_url, modalities=["TEXT"])
    response = httpx.get(f"{sandbox_url}/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "upstream": "sandbox", "requests": 1}


def parts_text_tokens(body: dict) -> int:
    text = "".join(p.get("text", "") for p in body["candidates"][0]["content"]["parts"])
    return max(1, len(text) // 4)
