"""The sandbox speaking OpenAI's Images API: on the wire, and to nanoweb's OpenAI provider."""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image

from generations.failures import ErrorKind
from generations.providers.base import ImageRequest, ProviderError, Reference, Timeouts
from generations.providers.openai_images import OpenAIImagesProvider
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.client import KEY, generate, http

GPT_IMAGE = "gpt-image-1"


def images(
    url: str, *, key: str | None = KEY, body: dict | None = None, **fields
) -> httpx.Response:
    """POST /v1/images/generations with ``fields`` (model and prompt defaulted)."""
    if body is None:
        body = {"model": GPT_IMAGE, "prompt": "a lighthouse at dusk", **fields}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return http.post(f"{url}/v1/images/generations", json=body, headers=headers, timeout=10)


def edits(
    url: str, refs: list[bytes], *, field: str = "image[]", mask: bytes | None = None, **fields
) -> httpx.Response:
    data = {"model": GPT_IMAGE, "prompt": "the same, at night", **fields}
    files = [(field, (f"ref-{i}.png", ref, "image/png")) for i, ref in enumerate(refs)]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    return http.post(
        f"{url}/v1/images/edits",
        data=data,
        files=files,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )


def png(size=(48, 32), color=(200, 60, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def picture(item: dict) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"], validate=True)))
    image.load()
    return image


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def openai_provider(url: str, key: str = KEY, read: float = 10.0) -> OpenAIImagesProvider:
    return OpenAIImagesProvider(f"{url}/v1", key, Timeouts(2, read), client=http)


def request(prompt: str = "a lighthouse at dusk", **kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", GPT_IMAGE)
    kwargs.setdefault("aspect_ratio", "1:1")
    return ImageRequest(prompt=prompt, **kwargs)


# --- on the wire ------------------------------------------------------------------------


def test_it_answers_a_generation_in_gpt_image_1s_shape(sandbox_url):
    response = images(sandbox_url, size="1536x1024", quality="low")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert list(body) == [
        "created",
        "background",
        "data",
        "output_format",
        "quality",
        "size",
        "usage",
    ]
    assert (body["output_format"], body["quality"], body["size"]) == ("png", "low", "1536x1024")
    assert [list(item) for item in body["data"]] == [["b64_json"]]
    image = picture(body["data"][0])
    assert (image.format, image.size) == ("PNG", (1536, 1024))
    assert body["usage"] == {
        "input_tokens": 5,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 5},
        "output_tokens": 400,  # gpt-image-1's low-quality landscape
        "total_tokens": 405,
    }


def test_it_makes_a_square_high_quality_image_when_left_to_auto(sandbox_url):
    body = images(sandbox_url).json()
    assert (body["size"], body["quality"], body["usage"]["output_tokens"]) == (
        "1024x1024",
        "high",
        4160,
    )
    assert picture(body["data"][0]).size == (1024, 1024)


def test_it_answers_in_the_output_format_asked_for(sandbox_url):
    body = images(sandbox_url, output_format="jpeg", size="1024x1536", quality="medium").json()
    image = picture(body["data"][0])
    assert (image.format, image.size, body["usage"]["output_tokens"]) == (
        "JPEG",
        (1024, 1536),
        1584,
    )


def test_it_makes_n_images_and_bills_each(sandbox_url):
    body = images(sandbox_url, n=2, quality="low", size="1024x1024").json()
    assert len(body["data"]) == 2
    assert body["usage"]["output_tokens"] == 2 * 272


def test_it_answers_dall_e_3_with_a_revised_prompt_and_no_usage(sandbox_url):
    response = images(sandbox_url, model="dall-e-3", size="1792x1024", response_format="b64_json")
    body = response.json()
    assert list(body) == ["created", "data"]
    assert body["data"][0]["revised_prompt"] == "A detailed rendering of a lighthouse at dusk"
    assert picture(body["data"][0]).size == (1792, 1024)


@pytest.mark.parametrize(
    ("fields", "param", "code", "message"),
    [
        ({"response_format": "b64_json"}, "response_format", "unknown_parameter",
         "Unknown parameter: 'response_format'."),
        ({"size": "1000x1000"}, "size", "invalid_value",
         "Invalid value: '1000x1000'. Supported values are: '1024x1024', '1536x1024', "
         "'1024x1536', and 'auto'."),
        ({"quality": "hd"}, "quality", "invalid_value", "Invalid value: 'hd'."),
        ({"n": 11}, "n", "integer_above_max_value",
         "Invalid 'n': integer above maximum value. Expected a value <= 10, but got 11 instead."),
        ({"n": "two"}, "n", "invalid_type", "Invalid type for 'n': expected an integer."),
        ({"prompt": ""}, "prompt", "missing_required_parameter",
         "Missing required parameter: 'prompt'."),
        ({"model": "dall-e-3", "n": 2, "response_format": "b64_json"}, "n",
         "integer_above_max_value", "Invalid 'n': integer above maximum value. Expected a "
         "value <= 1"),
        ({"model": "dall-e-3"}, "response_format", "invalid_value",
         "The Sandbox (offline) cannot host image URLs: send response_format=b64_json."),
        ({"prompt": "a boat [sandbox:418]"}, "prompt", None, "Unknown sandbox trigger"),
    ],
)  # fmt: skip
def test_it_refuses_what_the_api_refuses(sandbox_url, fields, param, code, message):
    error = error_of(images(sandbox_url, **fields), 400)
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert error["message"].startswith(message)


def test_it_refuses_a_body_that_is_not_json(sandbox_url):
    response = http.post(
        f"{sandbox_url}/v1/images/generations",
        content=b"prompt=hello",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert error_of(response, 400)["message"].startswith("We could not parse the JSON body")


def test_it_edits_with_several_references_and_counts_their_tokens(sandbox_url):
    response = edits(sandbox_url, [png(), png(color=(0, 0, 255))], size="1024x1536", quality="low")
    assert response.status_code == 200
    body = response.json()
    assert picture(body["data"][0]).size == (1024, 1536)
    assert body["usage"]["input_tokens_details"] == {"image_tokens": 2 * 323, "text_tokens": 4}
    assert body["usage"]["output_tokens"] == 408


def test_it_takes_a_single_image_field_too(sandbox_url):
    assert edits(sandbox_url, [png()], field="image").status_code == 200


@pytest.mark.parametrize(
    ("refs", "fields", "code", "message"),
    [
        ([], {"mask": png()}, "missing_required_parameter",
         "Missing required parameter: 'image'."),
        ([b"GIF89a not really"], {}, "invalid_image_file",
         "Invalid image file or mode for image 1, please check your image file."),
        ([png()] * 17, {}, "array_above_max_length",
         "Invalid 'image': too many images. Expected at most 16, but got 17 instead."),
        ([png()], {"model": "dall-e-3", "response_format": "b64_json"}, None,
         "Image edits are not supported for dall-e-3."),
    ],
)  # fmt: skip
def test_it_refuses_edits_the_api_refuses(sandbox_url, refs, fields, code, message):
    error = error_of(edits(sandbox_url, refs, **fields), 400)
    assert (error["code"], error["message"]) == (code, message)


def test_it_refuses_edits_sent_as_json(sandbox_url):
    response = http.post(
        f"{sandbox_url}/v1/images/edits",
        json={"model": GPT_IMAGE, "prompt": "x"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert "expected multipart/form-data" in error_of(response, 400)["message"]


def test_it_answers_an_unknown_openai_path_in_openais_envelope(sandbox_url):
    response = http.get(f"{sandbox_url}/v1/images/variations", headers={"Authorization": "x"})
    assert error_of(response, 404)["message"] == "Invalid URL (GET /v1/images/variations)"


def test_it_still_speaks_gemini_on_the_same_port(sandbox_url):
    response = generate(sandbox_url, modalities=["TEXT"])
    assert response.status_code == 200 and "candidates" in response.json()


# --- keys and quotas -------------------------------------------------------------------------


def test_it_asks_for_a_key_when_none_is_sent(sandbox_url):
    error = error_of(images(sandbox_url, key=None), 401)
    assert error["message"].startswith("You didn't provide an API key.")


def test_it_refuses_an_invalid_key_showing_only_its_ends():
    key = "sk-revoked-0123456789abcdef"
    with running_sandbox(SandboxConfig(invalid_keys={key})) as url:
        error = error_of(images(url, key=key), 401)
    assert error["code"] == "invalid_api_key"
    assert "sk-********************cdef" in error["message"]
    assert key not in error["message"]


def test_it_enforces_requests_per_minute_per_key_with_retry_after_ms():
    with running_sandbox(SandboxConfig(rpm=1)) as url:
        first = images(url, quality="low")
        refused = images(url, quality="low")
        other_key = images(url, key="another-key", quality="low")
    assert (first.status_code, other_key.status_code) == (200, 200)
    error = error_of(refused, 429)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "Limit 1, Used 1" in error["message"]
    assert 55_000 < int(refused.headers["retry-after-ms"]) <= 60_000
    assert 55 < int(refused.headers["retry-after"]) <= 60


def test_it_answers_a_spent_daily_quota_as_insufficient_quota():
    with running_sandbox(SandboxConfig(daily_quota=1)) as url:
        assert images(url, quality="low").status_code == 200
        error = error_of(images(url, quality="low"), 429)
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")


# --- faults, on the wire -----------------------------------------------------------------------

WIRE_FAULTS = {
    # trigger: status, error type, error code
    "429": (429, "requests", "rate_limit_exceeded"),
    "daily": (429, "insufficient_quota", "insufficient_quota"),
    "503": (503, "server_error", None),
    "500": (500, "server_error", None),
    "504": (504, "server_error", "timeout"),
    "region": (403, "request_forbidden", "unsupported_country_region_territory"),
    "blocked": (400, "image_generation_user_error", "moderation_blocked"),
    "image_safety": (400, "image_generation_user_error", "moderation_blocked"),
}


@pytest.mark.parametrize("trigger", WIRE_FAULTS)
def test_it_answers_an_error_trigger_in_openais_envelope(sandbox_url, trigger):
    status, kind, code = WIRE_FAULTS[trigger]
    response = images(sandbox_url, prompt=f"a boat [sandbox:{trigger}]")
    error = error_of(response, status)
    assert (error["type"], error["code"]) == (kind, code)
    if trigger == "429":
        assert (response.headers["retry-after-ms"], response.headers["retry-after"]) == (
            "1500",
            "2",
        )


@pytest.mark.parametrize("trigger", ["no_image", "text_only"])
def test_it_answers_an_image_less_trigger_with_empty_data(sandbox_url, trigger):
    body = images(sandbox_url, prompt=f"a boat [sandbox:{trigger}]").json()
    assert body["data"] == []
    assert body["usage"]["output_tokens"] == 0 and body["usage"]["input_tokens"] > 0


def test_it_blocks_dall_e_with_content_policy_violation(sandbox_url):
    response = images(
        sandbox_url, model="dall-e-3", prompt="[sandbox:blocked]", response_format="b64_json"
    )
    assert error_of(response, 400)["code"] == "content_policy_violation"


# --- through nanoweb's OpenAI provider ------------------------------------------------------


def test_the_provider_gets_a_landscape_image_and_its_usage(sandbox_url):
    result = openai_provider(sandbox_url).generate(request(aspect_ratio="16:9", image_size="2K"))
    (image,) = result.images
    with Image.open(io.BytesIO(image.data)) as im:
        assert (im.format, im.size) == ("PNG", (1536, 1024))
    assert image.mime_type == "image/png"
    assert (result.usage.input_tokens, result.usage.output_image_tokens) == (5, 1568)
    assert result.usage.total_tokens == 1573
    assert result.extra["quality"] == "medium"
    assert result.response_id.startswith("req_")


def test_the_provider_edits_with_two_references(sandbox_url):
    refs = (Reference(png(), "image/png"), Reference(png(color=(0, 90, 0)), "image/png"))
    result = openai_provider(sandbox_url).generate(
        request("the same, at night", aspect_ratio="4:5", image_size="1K", references=refs)
    )
    with Image.open(io.BytesIO(result.images[0].data)) as im:
        assert im.size == (1024, 1536)
    assert result.usage.input_tokens == 2 * 323 + 4
    assert result.usage.output_image_tokens == 408  # low quality, portrait
    assert result.extra["input_tokens_details"] == {"image_tokens": 646, "text_tokens": 4}


def test_the_provider_gets_dall_e_3_images_inline(sandbox_url):
    result = openai_provider(sandbox_url).generate(request(upstream_model="dall-e-3"))
    assert result.text == "A detailed rendering of a lighthouse at dusk"
    with Image.open(io.BytesIO(result.images[0].data)) as im:
        assert im.size == (1024, 1024)


PROVIDER_FAULTS = {
    # trigger: kind, may have been billed
    "429": (ErrorKind.RATE_LIMITED, False),
    "daily": (ErrorKind.KEY_EXHAUSTED, False),
    "503": (ErrorKind.TRANSIENT, False),
    "500": (ErrorKind.TRANSIENT, False),
    "504": (ErrorKind.SLOW, True),
    "region": (ErrorKind.REFUSED, False),
    "malformed": (ErrorKind.CORRUPT, True),
    "truncated": (ErrorKind.CORRUPT, True),
    "blocked": (ErrorKind.BLOCKED, False),
    "image_safety": (ErrorKind.BLOCKED, False),
    "no_image": (ErrorKind.NO_IMAGE, True),
    "text_only": (ErrorKind.NO_IMAGE, True),
}


@pytest.mark.parametrize("trigger", PROVIDER_FAULTS)
def test_the_provider_classifies_each_fault_trigger(sandbox_url, trigger):
    with pytest.raises(ProviderError) as info:
        openai_provider(sandbox_url).generate(request(f"a boat [sandbox:{trigger}]"))
    err = info.value
    assert (err.kind, err.may_have_been_billed) == PROVIDER_FAULTS[trigger]
    if trigger == "429":
        assert err.retry_after == 1.5


def test_the_provider_reports_a_held_connection_as_slow():
    with (
        running_sandbox(SandboxConfig(hang_seconds=5)) as url,
        pytest.raises(ProviderError) as info,
    ):
        openai_provider(url, read=0.3).generate(request("a boat [sandbox:timeout]"))
    assert (info.value.kind, info.value.may_have_been_billed) == (ErrorKind.SLOW, True)


def test_the_provider_succeeds_once_a_counted_trigger_is_spent(sandbox_url):
    openai = openai_provider(sandbox_url)
    with pytest.raises(ProviderError) as info:
        openai.generate(request("a boat [sandbox:503x1]", image_size="1K"))
    assert info.value.kind == ErrorKind.TRANSIENT
    assert len(openai.generate(request("a boat [sandbox:503x1]", image_size="1K")).images) == 1


def test_the_provider_meets_the_rate_limits_and_key_checks_of_the_sandbox():
    config = SandboxConfig(rpm=1, invalid_keys={"sk-revoked-key-000"})
    with running_sandbox(config) as url:
        openai_provider(url).generate(request(image_size="1K"))
        with pytest.raises(ProviderError) as limited:
            openai_provider(url).generate(request(image_size="1K"))
        with pytest.raises(ProviderError) as revoked:
            openai_provider(url, key="sk-revoked-key-000").generate(request())
    assert limited.value.kind == ErrorKind.RATE_LIMITED and 55 < limited.value.retry_after <= 60
    assert revoked.value.kind == ErrorKind.KEY_INVALID
    assert "sk-revoked-key-000" not in revoked.value.detail


def test_the_provider_meets_faults_drawn_at_a_rate():
    config = SandboxConfig(rates={"unavailable": 1.0})
    with running_sandbox(config) as url, pytest.raises(ProviderError) as info:
        openai_provider(url).generate(request())
    assert (info.value.kind, info.value.http_status) == (ErrorKind.TRANSIENT, 503)
