"""The Gemini provider against real recorded responses and a mocked transport
(the one boundary where mocking is allowed: no network, no database)."""

from __future__ import annotations

import base64
import io
import json
import random
import struct
import zlib
from datetime import timedelta
from email.utils import format_datetime
from functools import cache

import httpx
import pytest
from django.utils import timezone
from PIL import Image

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ProviderError,
    Reference,
    Timeouts,
    Usage,
    provider_class,
)
from generations.providers.common import image_problem
from generations.providers.gemini import (
    GeminiProvider,
    build_request_body,
    classify_error,
    parse_response,
)
from tests.factories import GEMINI_FIXTURES

FIXTURES = GEMINI_FIXTURES
RECORDED = sorted(FIXTURES.glob("*.json")) or [FIXTURES / "MISSING"]
FLASH = "gemini-2.5-flash-image.text-and-image.json"
FLASH_TEXT_THEN_IMAGE = "gemini-2.5-flash-image.text-only-then-image.json"
PRO = "gemini-3-pro-image-preview.text-and-image.json"

GOOGLE = "https://generativelanguage.googleapis.com"
KEY = "AIzaSyD-test-SECRET-key-0123456789abcdef"


@cache
def recording(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def interactions() -> list[tuple[str, int]]:
    found = []
    for path in RECORDED:
        assert path.is_file(), f"recorded Gemini fixtures missing: expected them in {FIXTURES}"
        found += [(path.name, i) for i in range(len(recording(path.name)["interactions"]))]
    return found


def image_bytes(fmt: str = "PNG", size=(32, 24), color=(30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def noisy_image_bytes(fmt: str, size=(96, 64)) -> bytes:
    """Incompressible pixels, so cutting the file short really cuts image data."""
    pixels = random.Random(3).randbytes(size[0] * size[1] * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_part(data: bytes | None = None, mime: str = "image/png", **extra) -> dict:
    return {"inlineData": {"mimeType": mime, "data": b64(data or image_bytes())}, **extra}


def answer(*parts: dict, finish: str = "STOP", usage: dict | None = None, **extra) -> dict:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish}
        ],
        "usageMetadata": usage
        or {
            "promptTokenCount": 9,
            "candidatesTokenCount": 1300,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            "totalTokenCount": 1309,
        },
        "modelVersion": "gemini-2.5-flash-image",
        "responseId": "abc123",
        **extra,
    }


def rpc_error(code: int, status: str, message: str, *details: dict) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": list(details)}}


def retry_info(delay: str) -> dict:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def quota_failure(*quota_ids: str, metric: str = "generate_content_free_tier_requests") -> dict:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": f"generativelanguage.googleapis.com/{metric}",
                "quotaId": q,
                "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-image"},
            }
            for q in quota_ids
        ],
    }


def provider(handler, *, key: str = KEY, base_url: str = GOOGLE, **kwargs) -> GeminiProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return GeminiProvider(base_url, key, kwargs.get("timeouts"), client=client)


def replying(status: int, body, headers: dict | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, dict | list):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, content=body, headers=headers)

    return handler


def raising(exc_type: type[Exception], text: str = "boom"):
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)

    return handler


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "gemini-2.5-flash-image")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "1:1")
    return ImageRequest(**kwargs)


def failure(handler, **kwargs) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider(handler, **kwargs).generate(request())
    return info.value


# --- the recorded responses ------------------------------------------------


def test_it_finds_the_recorded_fixtures():
    assert FIXTURES.is_dir(), f"recorded Gemini fixtures missing: expected {FIXTURES.resolve()}"
    assert {FLASH, FLASH_TEXT_THEN_IMAGE, PRO} <= {p.name for p in FIXTURES.glob("*.json")}


@pytest.mark.parametrize(("name", "index"), interactions())
def test_it_parses_every_recorded_interaction(name, index):
    recorded = recording(name)["interactions"][index]
    response = recorded["response"]
    try:
        result = parse_response(response["body"], http_status=response["status"])
    except ProviderError as err:
        assert err.kind == ErrorKind.NO_IMAGE
        assert err.may_have_been_billed and err.usage.total_tokens > 0
        return
    assert len(result.images) == 1
    with Image.open(io.BytesIO(result.images[0].data)) as im:
        assert Image.MIME[im.format] == result.images[0].mime_type
        assert im.size[0] >= 512 and im.size[1] >= 512
    assert result.usage.output_image_tokens > 0
    assert result.model_version and result.response_id


@pytest.mark.parametrize(("name", "index"), interactions())
def test_it_replays_every_recorded_interaction_through_generate(name, index):
    recorded = recording(name)["interactions"][index]
    sent = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(
            recorded["response"]["status"],
            json=recorded["response"]["body"],
            headers={"content-type": recorded["response"]["headers"]["content-type"][0]},
        )

    prompt = recorded["request"]["body"]["contents"][0]["parts"][0]["text"]
    model = recorded["request"]["uri"].rsplit("/", 1)[1].split(":")[0]
    gemini = provider(handler)
    try:
        gemini.generate(request(upstream_model=model, prompt=prompt))
    except ProviderError as err:
        assert err.kind == ErrorKind.NO_IMAGE
    assert str(sent[0].url) == recorded["request"]["uri"]
    assert json.loads(sent[0].content)["contents"][0]["parts"][0]["text"] == prompt


def test_it_reads_the_image_and_usage_of_a_flash_image_answer():
    response = recording(FLASH)["interactions"][0]["response"]
    result = parse_response(response["body"])
    assert [img.mime_type for img in result.images] == ["image/png"]
    with Image.open(io.BytesIO(result.images[0].data)) as im:
        assert (im.format, im.size) == ("PNG", (1024, 1024))
    assert result.usage == Usage(
        input_tokens=17, output_text_tokens=46, output_image_tokens=1290, total_tokens=1353
    )
    assert result.text.startswith("Once, in a hidden cenote, lived an axolotl named Pip")
    assert (result.model_version, result.response_id) == (
        "gemini-2.5-flash-image",
        "ZyjgaJODFaudz7IP2OK9-As",
    )
    assert result.http_status == 200


def test_it_reports_a_text_only_answer_as_no_image_quoting_the_text():
    first, second = recording(FLASH_TEXT_THEN_IMAGE)["interactions"]
    with pytest.raises(ProviderError) as info:
        parse_response(first["response"]["body"])
    err = info.value
    assert err.kind == ErrorKind.NO_IMAGE
    assert err.message.startswith('The model answered with text only: "In a hidden cave, a shy')
    assert len(err.message) < 220
    assert err.may_have_been_billed is True
    assert (err.usage.input_tokens, err.usage.output_text_tokens) == (18, 48)
    assert err.usage.total_tokens == 66

    result = parse_response(second["response"]["body"])
    assert [img.mime_type for img in result.images] == ["image/png"]
    assert result.text == "Here's an image of an axolotl for you!"
    assert result.usage.output_image_tokens == 1290


def test_it_reads_a_pro_answer_and_ignores_thought_signatures():
    response = recording(PRO)["interactions"][0]["response"]
    result = parse_response(response["body"])
    assert [img.mime_type for img in result.images] == ["image/jpeg"]
    with Image.open(io.BytesIO(result.images[0].data)) as im:
        assert im.format == "JPEG"
    assert result.usage == Usage(
        input_tokens=14,
        output_text_tokens=163,
        output_image_tokens=1120,
        thinking_tokens=174,
        total_tokens=1471,
    )
    assert result.text.startswith("A little axolotl named Archie")
    signature = response["body"]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]
    assert signature[:40] not in result.text and signature[:40] not in repr(result.extra)


def test_it_joins_the_text_parts_around_the_image():
    body = answer({"text": "Here it is: "}, image_part(), {"text": " Enjoy the axolotl."})
    assert parse_response(body).text == "Here it is:\nEnjoy the axolotl."


def test_it_skips_interim_thought_parts():
    thought_image = image_bytes(color=(255, 0, 0))
    final_image = image_bytes(color=(0, 0, 255))
    body = answer(
        {"text": "Planning the composition", "thought": True},
        image_part(thought_image, thought=True),
        {"text": "Done."},
        image_part(final_image, thoughtSignature="c2lnbmF0dXJl"),
    )
    result = parse_response(body)
    assert [img.data for img in result.images] == [final_image]
    assert result.text == "Done."


def test_it_reports_no_image_when_only_a_thought_image_came_back():
    with pytest.raises(ProviderError) as info:
        parse_response(answer(image_part(thought=True)))
    assert info.value.kind == ErrorKind.NO_IMAGE
    assert info.value.message == "The model returned neither an image nor text."


def test_it_counts_the_reference_images_in_the_prompt_tokens():
    body = answer(
        image_part(),
        usage={
            "promptTokenCount": 530,
            "promptTokensDetails": [
                {"modality": "IMAGE", "tokenCount": 516},
                {"modality": "TEXT", "tokenCount": 14},
            ],
            "candidatesTokenCount": 1290,
            "candidatesTokensDetails": [{"modality": "IMAGE", "tokenCount": 1290}],
            "totalTokenCount": 1820,
        },
    )
    assert parse_response(body).usage == Usage(
        input_tokens=530, input_image_tokens=516, output_image_tokens=1290, total_tokens=1820
    )


def test_it_counts_missing_usage_fields_as_zero():
    body = answer(image_part(), usage={"promptTokenCount": 5})
    assert parse_response(body).usage == Usage(input_tokens=5)
    assert parse_response({**answer(image_part()), "usageMetadata": None}).usage == Usage()


# --- blocks and answers without an image ------------------------------------


def test_it_reports_a_blocked_prompt_in_plain_language():
    body = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 271, "totalTokenCount": 271},
    }
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    err = info.value
    assert err.kind == ErrorKind.BLOCKED
    assert err.message == (
        "Your prompt was blocked by the provider's safety filter (prohibited content)."
    )
    assert (err.may_have_been_billed, err.usage.input_tokens, err.http_status) == (True, 271, 200)
    assert not err.retryable


@pytest.mark.parametrize(
    ("reason", "says"),
    [
        ("IMAGE_SAFETY", "The image was blocked by the provider's safety filter."),
        ("SAFETY", "The request was blocked by the provider's safety filter."),
        ("PROHIBITED_CONTENT", "prohibited content"),
        ("IMAGE_PROHIBITED_CONTENT", "prohibited content"),
        ("BLOCKLIST", "terms the provider does not allow"),
        ("SPII", "sensitive personal information"),
        ("RECITATION", "copyrighted"),
        ("IMAGE_RECITATION", "copyrighted"),
    ],
)
def test_it_reports_a_safety_finish_reason_as_blocked(reason, says):
    body = answer({"text": "I can't make that."}, finish=reason)
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert info.value.kind == ErrorKind.BLOCKED
    assert says in info.value.message
    assert info.value.may_have_been_billed and info.value.usage.input_tokens == 9
    assert reason in info.value.detail


def test_it_blocks_even_when_an_image_came_with_a_safety_finish_reason():
    with pytest.raises(ProviderError) as info:
        parse_response(answer(image_part(), finish="IMAGE_SAFETY"))
    assert info.value.kind == ErrorKind.BLOCKED


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (answer(finish="NO_IMAGE"), "The model did not produce an image."),
        (answer(finish="IMAGE_OTHER"), "The model did not produce an image."),
        (answer(finish="MAX_TOKENS"), "output limit"),
        (answer(finish="OTHER"), "The model did not produce an image (other)."),
        (answer(), "The model returned neither an image nor text."),
        ({"usageMetadata": {"promptTokenCount": 3}}, "The provider returned no result"),
        ({"candidates": []}, "The provider returned no result"),
    ],
)
def test_it_reports_an_answer_without_an_image_as_no_image(body, says):
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert info.value.kind == ErrorKind.NO_IMAGE
    assert says in info.value.message
    assert info.value.may_have_been_billed and info.value.retryable


# --- damaged answers ---------------------------------------------------------


def corrupt(body, **kwargs) -> ProviderError:
    err = failure(replying(200, body), **kwargs)
    assert err.kind == ErrorKind.CORRUPT
    assert err.message == "The provider sent back a damaged response."
    assert err.may_have_been_billed and err.http_status == 200
    return err


def test_it_rejects_truncated_base64():
    data = b64(image_bytes())
    body = answer({"inlineData": {"mimeType": "image/png", "data": data[:-3]}})
    assert "base64" in corrupt(body).detail
    assert corrupt(body).usage.output_image_tokens == 1290


def test_it_rejects_a_png_cut_short_on_a_base64_boundary():
    data = b64(image_bytes(size=(200, 200)))
    body = answer(
        {"inlineData": {"mimeType": "image/png", "data": data[: len(data) // 2 // 4 * 4]}}
    )
    assert "damaged image/png" in corrupt(body).detail


def test_it_rejects_base64_with_foreign_characters():
    body = answer({"inlineData": {"mimeType": "image/png", "data": "iVBORw0K*GgoA"}})
    assert "base64" in corrupt(body).detail


@pytest.mark.parametrize(
    ("data", "mime", "problem"),
    [
        (b"<html>not an image</html>", "image/png", "not a image/png image"),
        (image_bytes("JPEG"), "image/png", "not a image/png image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png", "damaged image/png"),
        (b"\xff\xd8\xff" + b"garbage" * 10, "image/jpeg", "damaged image/jpeg"),
        (image_bytes(), "image/heic", "unsupported image type"),
    ],
)
def test_it_rejects_bytes_that_are_not_the_declared_image(data, mime, problem):
    assert problem in corrupt(answer(image_part(data, mime))).detail


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_it_rejects_a_truncated_jpeg(keep):
    data = noisy_image_bytes("JPEG")
    cut = data[: int(len(data) * keep)]
    err = corrupt(answer(image_part(cut, "image/jpeg")))
    assert "damaged image/jpeg" in err.detail and "truncated" in err.detail
    assert err.retryable  # DESIGN: corrupt output is retried as transient


def test_it_rejects_a_jpeg_missing_only_its_end_marker():
    data = noisy_image_bytes("JPEG")
    assert data.endswith(b"\xff\xd9")
    assert "damaged image/jpeg" in image_problem(data[:-2], "image/jpeg")


def test_it_still_rejects_a_truncated_png():
    data = noisy_image_bytes("PNG")
    assert "damaged image/png" in image_problem(data[: len(data) // 2], "image/png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_it_accepts_a_whole_image_after_decoding_it(fmt):
    mime = f"image/{fmt.lower()}"
    assert image_problem(noisy_image_bytes(fmt), mime) == ""


def test_it_does_not_decode_an_image_claiming_more_pixels_than_allowed(settings):
    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 2, 0, 0, 0)
    bomb = (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"?") + chunk(b"IEND", b"")
    )
    assert settings.NANOWEB_MAX_IMAGE_PIXELS < 9000 * 9000
    assert "9000×9000 pixels is too large" in image_problem(bomb, "image/png")


def test_it_accepts_a_jpeg_declared_as_image_jpg():
    result = parse_response(answer(image_part(image_bytes("JPEG"), "image/jpg")))
    assert result.images[0].mime_type == "image/jpeg"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"candidates": [{"content": ', "application/json; charset=UTF-8"),
        (b"<html><body>Service Unavailable</body></html>", "text/html"),
        (b"\xff\xfe\x00garbage", "application/octet-stream"),
        (b"[1, 2, 3]", "application/json"),
        (b"", "application/json"),
    ],
)
def test_it_rejects_a_200_that_is_not_a_gemini_answer(body, content_type):
    err = failure(replying(200, body, headers={"content-type": content_type}))
    assert err.kind == ErrorKind.CORRUPT
    assert err.may_have_been_billed and err.http_status == 200


def test_it_classifies_an_error_envelope_wrapped_in_a_200():
    body = rpc_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
    err = failure(replying(200, body))
    assert (err.kind, err.http_status) == (ErrorKind.TRANSIENT, 503)


# --- the request -------------------------------------------------------------


def test_it_builds_the_body_without_an_image_size_when_none_is_asked():
    body = build_request_body(request(aspect_ratio="16:9"))
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "an axolotl reading a newspaper"}]}],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9"},
        },
    }


def test_it_sends_the_image_size_when_asked():
    body = build_request_body(request(image_size="2K", aspect_ratio="3:4"))
    assert body["generationConfig"]["imageConfig"] == {"aspectRatio": "3:4", "imageSize": "2K"}


def test_it_sends_references_as_inline_base64_after_the_prompt():
    png, jpeg = image_bytes(), image_bytes("JPEG")
    refs = (Reference(png, "image/png"), Reference(jpeg, "image/jpeg"))
    parts = build_request_body(request(references=refs))["contents"][0]["parts"]
    assert parts[0] == {"text": "an axolotl reading a newspaper"}
    assert [p["inlineData"]["mimeType"] for p in parts[1:]] == ["image/png", "image/jpeg"]
    assert [base64.b64decode(p["inlineData"]["data"]) for p in parts[1:]] == [png, jpeg]


def test_it_posts_to_the_model_endpoint_with_the_key_in_a_header():
    sent: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(200, json=answer(image_part()))

    gemini = provider(handler, base_url="https://relay.example/gemini/", timeouts=Timeouts(3, 45))
    result = gemini.generate(request(upstream_model="gemini-3-pro-image-preview", image_size="4K"))
    req = sent[0]
    assert req.method == "POST"
    assert str(req.url) == (
        "https://relay.example/gemini/v1beta/models/gemini-3-pro-image-preview:generateContent"
    )
    assert req.headers["x-goog-api-key"] == KEY
    assert KEY not in str(req.url)
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.content)["generationConfig"]["imageConfig"]["imageSize"] == "4K"
    assert req.extensions["timeout"] == {"connect": 3, "read": 45, "write": 45, "pool": 3}
    assert len(result.images) == 1 and result.usage.output_image_tokens == 1290


def test_it_accepts_a_model_name_with_the_models_prefix():
    gemini = GeminiProvider(GOOGLE, KEY, client=httpx.Client())
    assert gemini.endpoint("models/gemini-2.5-flash-image") == (
        f"{GOOGLE}/v1beta/models/gemini-2.5-flash-image:generateContent"
    )


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"candidates": [{"content": "text"}]}, ErrorKind.CORRUPT),
        ({"promptFeedback": ["SAFETY"]}, ErrorKind.CORRUPT),
        ({"candidates": "nope"}, ErrorKind.NO_IMAGE),
        ({"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": 7}}]}}]},
         ErrorKind.NO_IMAGE),
    ],
)  # fmt: skip
def test_it_reports_json_of_an_unexpected_shape_without_crashing(body, kind):
    with pytest.raises(ProviderError) as info:
        parse_response(body)
    assert (info.value.kind, info.value.may_have_been_billed) == (kind, True)


def test_it_is_the_registered_gemini_provider():
    assert provider_class("gemini") is GeminiProvider


# --- HTTP errors ---------------------------------------------------------------


def test_it_waits_the_fractional_retry_delay_google_asks_for():
    body = rpc_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota. Please retry in 1.5s.",
        quota_failure("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"),
        retry_info("1.5s"),
    )
    err = failure(replying(429, body))
    assert (err.kind, err.retry_after, err.http_status) == (ErrorKind.RATE_LIMITED, 1.5, 429)
    assert err.message == "The provider is receiving too many requests right now."
    assert not err.may_have_been_billed


def test_it_rests_the_key_when_the_daily_quota_is_used_up():
    body = rpc_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        quota_failure(
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        ),
        retry_info("47s"),
    )
    err = failure(replying(429, body))
    assert err.kind == ErrorKind.KEY_EXHAUSTED
    assert err.message == "The provider key has used up its daily quota."
    assert "PerDay" in err.detail


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "7"}, 7.0), ({}, None), ({"retry-after": "soon"}, None)],
)
def test_it_falls_back_to_retry_after_from_a_relay(headers, expected):
    err = classify_error(429, b'{"error": {"code": 429, "message": "slow down"}}', headers)
    assert (err.kind, err.retry_after) == (ErrorKind.RATE_LIMITED, expected)


def test_it_reads_retry_after_as_an_http_date():
    when = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    err = classify_error(429, "Too Many Requests", {"Retry-After": when})
    assert 25 <= err.retry_after <= 30


def test_it_reads_a_whole_second_retry_delay_from_a_text_body():
    body = json.dumps(rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", retry_info("30s")))
    assert classify_error(429, body, None).retry_after == 30.0


API_KEY_INVALID = rpc_error(
    400,
    "INVALID_ARGUMENT",
    "API key not valid. Please pass a valid API key.",
    {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    },
)

HTTP_ERRORS = [
    # status, body, kind, message, billed
    (500, rpc_error(500, "INTERNAL", "An internal error has occurred."), ErrorKind.TRANSIENT,
     "The provider had an internal error.", False),
    (502, b"<html><h1>502 Bad Gateway</h1></html>", ErrorKind.TRANSIENT,
     "The provider is unavailable right now.", False),
    (503, rpc_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
     ErrorKind.TRANSIENT, "The provider is overloaded right now.", False),
    (504, rpc_error(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
     ErrorKind.SLOW, "The provider took too long to answer.", True),
    (400, API_KEY_INVALID, ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (400, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key."}},
     ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (401, b"Unauthorized", ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (403, rpc_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
     ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (400, rpc_error(400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
     ErrorKind.REFUSED,
     "The provider is not available to this account or from this location: User location is "
     "not supported for the API use.", False),
    (400, rpc_error(400, "INVALID_ARGUMENT", "Unsupported   aspect ratio:\n 7:3"),
     ErrorKind.PERMANENT, "The provider rejected the request: Unsupported aspect ratio: 7:3",
     False),
    (404, [rpc_error(404, "NOT_FOUND", "models/nano-banana-9 is not found for API version "
                                       "v1beta.")],
     ErrorKind.MODEL_GONE,
     "The provider no longer serves this model: models/nano-banana-9 is not found for API "
     "version v1beta.", False),
    (404, b"<html>404 Not Found</html>", ErrorKind.PERMANENT,
     "The provider rejected the request.", False),
    (413, b"<html>Request Entity Too Large</html>", ErrorKind.PERMANENT,
     "The request was too large for the provider (are the reference images too big?).", False),
    (400, b"", ErrorKind.PERMANENT, "The provider rejected the request.", False),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "kind", "message", "billed"), HTTP_ERRORS)
def test_it_classifies_http_errors(status, body, kind, message, billed):
    err = failure(replying(status, body))
    assert (err.kind, err.message, err.may_have_been_billed) == (kind, message, billed)
    assert err.http_status == status
    assert str(status) in err.detail
    assert "<html>" not in err.message


FAILED_PRECONDITIONS = [
    "User location is not supported for the API use.",
    "Gemini API free tier is not available in your country. Please enable billing on your "
    "project in Google AI Studio.",
    "Precondition check failed.",
]


@pytest.mark.parametrize("said", FAILED_PRECONDITIONS)
def test_it_keeps_the_key_when_the_account_or_location_is_refused(said):
    # Not the key's fault (every key of the project gets the same answer) and not fixed
    # by retrying here: the route refused, so the job fails over (a relay may serve), the
    # key stays enabled, and the person sees Google's reason if nothing else can serve.
    err = failure(replying(400, rpc_error(400, "FAILED_PRECONDITION", said)))
    assert err.kind == ErrorKind.REFUSED
    assert err.message.endswith(said)
    assert "HTTP 400 FAILED_PRECONDITION" in err.detail
    assert not err.may_have_been_billed


def test_it_explains_a_failed_precondition_without_a_message():
    err = classify_error(
        400, json.dumps({"error": {"code": 400, "status": "FAILED_PRECONDITION"}}), {}
    )
    assert err.kind == ErrorKind.REFUSED
    assert err.message == "The provider is not available to this account or from this location."


def test_it_still_disables_a_key_google_calls_invalid_whatever_the_status():
    body = rpc_error(
        400,
        "FAILED_PRECONDITION",
        "API key expired. Please renew the API key.",
        {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_EXPIRED"},
    )
    assert classify_error(400, json.dumps(body), {}).kind == ErrorKind.KEY_INVALID


def test_it_keeps_a_proxy_error_page_for_admins_only():
    err = failure(replying(502, b"<html><h1>502 Bad Gateway</h1></html>"))
    assert "502 Bad Gateway" in err.detail
    assert "Bad Gateway" not in err.message


def test_it_cuts_a_very_long_upstream_message():
    err = classify_error(400, json.dumps(rpc_error(400, "INVALID_ARGUMENT", "x" * 5000)), {})
    assert err.kind == ErrorKind.PERMANENT
    assert len(err.message) < 400 and err.message.endswith("…")


# --- transport failures --------------------------------------------------------


@pytest.mark.parametrize(
    ("exc_type", "kind", "billed"),
    [
        (httpx.ConnectError, ErrorKind.TRANSIENT, False),
        (httpx.ConnectTimeout, ErrorKind.TRANSIENT, False),
        (httpx.PoolTimeout, ErrorKind.TRANSIENT, False),
        (httpx.ReadTimeout, ErrorKind.SLOW, True),
        (httpx.WriteTimeout, ErrorKind.TRANSIENT, True),
        (httpx.RemoteProtocolError, ErrorKind.TRANSIENT, True),
        (httpx.ReadError, ErrorKind.TRANSIENT, True),
    ],
)
def test_it_classifies_transport_failures(exc_type, kind, billed):
    err = failure(raising(exc_type, "connection trouble"))
    assert (err.kind, err.may_have_been_billed, err.http_status) == (kind, billed, None)
    assert exc_type.__name__ in err.detail
    assert err.__cause__ is None  # the httpx error holds the request headers, key included
    assert err.retryable


# --- the key never leaks ---------------------------------------------------------

LEAKY = [
    replying(400, rpc_error(400, "INVALID_ARGUMENT", f"Bad key {KEY} for this relay")),
    replying(401, f"invalid api key: {KEY}".encode()),
    replying(403, {"error": {"message": f"key={KEY} is disabled"}}),
    replying(429, rpc_error(429, "RESOURCE_EXHAUSTED", f"{KEY} over quota", retry_info("2s"))),
    replying(200, f"not json {KEY}".encode()),
    raising(httpx.ConnectError, f"proxy refused {KEY}"),
    raising(httpx.ReadTimeout, f"timed out {KEY}"),
] + [replying(status, body) for status, body, *_ in HTTP_ERRORS]


@pytest.mark.parametrize("handler", LEAKY)
def test_it_never_puts_the_api_key_in_an_error(handler):
    err = failure(handler)
    for text in (err.message, err.detail, str(err), repr(err)):
        assert KEY not in text


def test_it_redacts_an_echoed_key_but_keeps_the_rest_of_the_message():
    err = failure(LEAKY[0])
    assert err.message == "The provider rejected the request: Bad key [key] for this relay"
    assert err.kind == ErrorKind.PERMANENT


def test_it_spots_a_per_day_quota_named_only_in_the_metric():
    details = quota_failure("RequestsQuota", metric="generate_content_requests_per_day")
    body = json.dumps(rpc_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded", details))
    assert classify_error(429, body, {}).kind == ErrorKind.KEY_EXHAUSTED


def test_it_keeps_the_retry_delay_and_status_of_a_redacted_error():
    err = failure(LEAKY[3])
    assert (err.kind, err.retry_after, err.http_status) == (ErrorKind.RATE_LIMITED, 2.0, 429)
    assert err.message == "The provider is receiving too many requests right now."
    assert err.detail.startswith("HTTP 429 RESOURCE_EXHAUSTED: [key] over quota")


def test_it_keeps_the_billing_flag_of_a_redacted_transport_error():
    err = failure(LEAKY[6])
    assert (err.kind, err.may_have_been_billed) == (ErrorKind.SLOW, True)
    assert err.detail == "ReadTimeout: timed out [key]"
