"""Requests the real API refuses get a 400 INVALID_ARGUMENT (or a 404) in Google's envelope."""

from __future__ import annotations

import socket

import httpx
import pytest

from tests.generations.sandbox.client import FLASH, FLASH_31, KEY, LITE, NB21, PRO, generate


def error_of(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    return error


def test_it_refuses_image_size_for_flash_image(sandbox_url):
    error = error_of(generate(sandbox_url, FLASH, image_config={"imageSize": "1K"}))
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == f"imageSize is not supported for models/{FLASH}."


@pytest.mark.parametrize(
    ("image_config", "message"),
    [
        ({"aspectRatio": "7:3"}, "Unsupported aspect ratio '7:3'."),
        ({"imageSize": "4k"}, "Unsupported image size '4k'. Supported values: 1K, 2K, 4K."),
        ({"image_size": "8K"}, "Unsupported image size '8K'."),
    ],
)
def test_it_refuses_what_the_model_cannot_make(sandbox_url, image_config, message):
    error = error_of(generate(sandbox_url, PRO, image_config=image_config))
    assert error["message"].startswith(message)


@pytest.mark.parametrize(
    ("model", "size", "supported"),
    [
        (NB21, "512", "1K, 2K, 4K"),  # 2.1 dropped the 512 tier
        (PRO, "512", "1K, 2K, 4K"),
        (LITE, "2K", "1K"),
        (LITE, "4K", "1K"),
        (LITE, "512", "1K"),
    ],
)
def test_it_refuses_an_image_size_the_model_does_not_make(sandbox_url, model, size, supported):
    error = error_of(generate(sandbox_url, model, image_config={"imageSize": size}))
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == f"Unsupported image size {size!r}. Supported values: {supported}."


@pytest.mark.parametrize(("model", "size"), [(LITE, "1K"), (FLASH_31, "512"), (NB21, "4K")])
def test_it_takes_the_sizes_the_model_makes(sandbox_url, model, size):
    assert generate(sandbox_url, model, image_config={"imageSize": size}).status_code == 200


@pytest.mark.parametrize("ratio", ["1:4", "4:1", "1:8", "8:1"])
def test_only_the_3_1_models_take_the_extreme_ratios(sandbox_url, ratio):
    for model in (PRO, FLASH):
        error = error_of(generate(sandbox_url, model, image_config={"aspectRatio": ratio}))
        assert error["message"].startswith(f"Unsupported aspect ratio {ratio!r}.")
    for model in (NB21, FLASH_31, LITE):
        response = generate(sandbox_url, model, image_config={"aspectRatio": ratio})
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "* GenerateContentRequest.contents: contents is not specified\n"),
        ({"contents": []}, "* GenerateContentRequest.contents: contents is not specified\n"),
        (
            {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}},
            f"Multiple candidates is not enabled for models/{FLASH}",
        ),
        (
            {
                "contents": [{"parts": [{"text": "x"}]}],
                "generationConfig": {"responseModalities": ["AUDIO"]},
            },
            "Model does not support the requested response modalities: audio",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "%%%"}}]}]},
            "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), "
            "Base64 decoding failed",
        ),
    ],
)
def test_it_refuses_a_malformed_request(sandbox_url, body, message):
    assert error_of(generate(sandbox_url, FLASH, body=body))["message"] == message


def test_it_refuses_a_body_that_is_not_json(sandbox_url):
    response = httpx.post(
        f"{sandbox_url}/v1beta/models/{FLASH}:generateContent",
        content=b"{not json",
        headers={"x-goog-api-key": KEY, "content-type": "application/json"},
    )
    assert error_of(response)["message"] == "Invalid JSON payload received. Unexpected token."


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1beta/models/{FLASH}:generateContent"),
        ("POST", f"/v1beta/models/{FLASH}:streamGenerateContent"),
        ("POST", "/v1beta/images/generations"),
        ("GET", "/"),
    ],
)
def test_it_answers_unknown_routes_with_a_404_envelope(sandbox_url, method, path):
    response = httpx.request(method, sandbox_url + path, headers={"x-goog-api-key": KEY})
    error = error_of(response, 404)
    assert error["status"] == "NOT_FOUND"


def test_it_refuses_a_body_over_twenty_megabytes_without_reading_it(sandbox_url):
    host, port = sandbox_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(
            f"POST /v1beta/models/{FLASH}:generateContent HTTP/1.1\r\nHost: x\r\n"
            f"x-goog-api-key: {KEY}\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n".encode()
        )
        answer = conn.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Request payload size exceeds the limit: 20971520 bytes." in body
