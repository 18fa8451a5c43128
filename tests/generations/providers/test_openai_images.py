"""The OpenAI Images provider against a mocked transport (no network, no database)."""

from __future__ import annotations

import base64
import email.policy
import io
import json
from datetime import timedelta
from email.parser import BytesParser
from email.utils import format_datetime

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
from generations.providers.openai_images import (
    OpenAIImagesProvider,
    classify_error,
    openai_size,
    parse_response,
    request_fields,
)
from generations.providers.safe_fetch import FetchError
from tests.generations.providers.test_gemini import raising, replying

OPENAI = "https://api.openai.com/v1"
KEY = "sk-proj-test-SECRET-key-0123456789abcdef"
USAGE = {
    "input_tokens": 50,
    "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
    "output_tokens": 4160,
    "total_tokens": 4210,
}


def image_bytes(fmt: str = "PNG", size=(32, 24), color=(30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def answer(*items: dict, usage: dict | None = USAGE, **extra) -> dict:
    body = {"created": 1713833628, "data": list(items) or [{"b64_json": b64(image_bytes())}]}
    if usage is not None:
        body["usage"] = usage
    return {**body, **extra}


def openai_error(message: str, kind: str, code: str | None = None, param=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "gpt-image-1")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "1:1")
    return ImageRequest(**kwargs)


def provider(handler, *, key: str = KEY, base_url: str = OPENAI, **kwargs) -> OpenAIImagesProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return OpenAIImagesProvider(base_url, key, kwargs.get("timeouts"), client=client)


def recording(body: dict | None = None, headers: dict | None = None):
    """A handler answering 200 with ``body`` that keeps what it was sent in ``.sent``."""
    sent: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(200, json=body or answer(), headers=headers)

    handler.sent = sent
    return handler


def failure(handler, req: ImageRequest | None = None, **kwargs) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        provider(handler, **kwargs).generate(req or request())
    return info.value


def multipart(req: httpx.Request) -> list[tuple[str, str | None, str, bytes]]:
    """(field name, filename, content type, bytes) of every part of a multipart body."""
    head = f"Content-Type: {req.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=email.policy.HTTP).parsebytes(head + req.content)
    return [
        (
            part.get_param("name", header="content-disposition"),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def test_it_is_the_registered_openai_provider():
    assert provider_class("openai") is OpenAIImagesProvider


# --- sizes and quality ----------------------------------------------------------------

# The table in the module docstring, row by row.
SIZE_TABLE = {
    "1:1": ("1024x1024", "1024x1024", "1024x1024"),
    "4:5": ("1024x1536", "1024x1024", "1024x1024"),
    "5:4": ("1536x1024", "1024x1024", "1024x1024"),
    "3:4": ("1024x1536", "1024x1792", "1024x1024"),
    "2:3": ("1024x1536", "1024x1792", "1024x1024"),
    "9:16": ("1024x1536", "1024x1792", "1024x1024"),
    "4:3": ("1536x1024", "1792x1024", "1024x1024"),
    "3:2": ("1536x1024", "1792x1024", "1024x1024"),
    "16:9": ("1536x1024", "1792x1024", "1024x1024"),
    "21:9": ("1536x1024", "1792x1024", "1024x1024"),
}


@pytest.mark.parametrize("ratio", SIZE_TABLE)
def test_it_picks_the_size_nearest_the_aspect_ratio(ratio):
    models = ("gpt-image-1", "dall-e-3", "dall-e-2")
    assert tuple(openai_size(m, ratio) for m in models) == SIZE_TABLE[ratio]


def test_it_treats_an_unknown_relay_model_as_a_gpt_image_model():
    assert openai_size("openai/gpt-image-1.5", "16:9") == "1536x1024"
    assert openai_size("some-relay-image-model", "9:16") == "1024x1536"
    assert openai_size("openai/dall-e-3", "9:16") == "1024x1792"


@pytest.mark.parametrize(("size", "quality"), [("1K", "low"), ("2K", "medium"), ("4K", "high")])
def test_it_asks_gpt_image_models_for_the_quality_of_the_size_step(size, quality):
    assert request_fields(request(image_size=size))["quality"] == quality
    assert request_fields(request(upstream_model="openai/gpt-image-1-mini", image_size=size))[
        "quality"
    ] == quality  # fmt: skip


def test_it_leaves_quality_to_openai_when_the_model_has_no_sizes():
    assert request_fields(request(image_size=None)) == {
        "model": "gpt-image-1",
        "prompt": "an axolotl reading a newspaper",
        "n": 1,
        "size": "1024x1024",
    }


def test_it_asks_dall_e_for_base64_and_sends_it_no_quality():
    fields = request_fields(
        request(upstream_model="dall-e-3", image_size="4K", aspect_ratio="16:9")
    )
    assert fields == {
        "model": "dall-e-3",
        "prompt": "an axolotl reading a newspaper",
        "n": 1,
        "size": "1792x1024",
        "response_format": "b64_json",
    }


def test_it_refuses_an_aspect_ratio_it_cannot_read():
    err = failure(recording(), request(aspect_ratio="wide"))
    assert (err.kind, err.message) == (ErrorKind.PERMANENT, "Unsupported aspect ratio 'wide'.")


# --- the request on the wire ------------------------------------------------------------


def test_it_posts_json_to_generations_with_the_key_as_a_bearer_token():
    handler = recording()
    openai = provider(handler, base_url="https://relay.example/v1/", timeouts=Timeouts(3, 90))
    openai.generate(request(aspect_ratio="3:2", image_size="2K"))
    (sent,) = handler.sent
    assert (sent.method, str(sent.url)) == ("POST", "https://relay.example/v1/images/generations")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(sent.url)
    assert sent.headers["content-type"] == "application/json"
    assert json.loads(sent.content) == {
        "model": "gpt-image-1",
        "prompt": "an axolotl reading a newspaper",
        "n": 1,
        "size": "1536x1024",
        "quality": "medium",
    }
    assert sent.extensions["timeout"] == {"connect": 3, "read": 90, "write": 90, "pool": 3}


def test_it_posts_references_to_edits_as_repeated_image_parts():
    png, jpeg = image_bytes(), image_bytes("JPEG")
    handler = recording()
    refs = (Reference(png, "image/png"), Reference(jpeg, "image/jpeg"))
    provider(handler).generate(request(references=refs, image_size="4K", aspect_ratio="9:16"))
    (sent,) = handler.sent
    assert str(sent.url) == f"{OPENAI}/images/edits"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = multipart(sent)
    fields = {name: data.decode() for name, filename, _, data in parts if filename is None}
    assert fields == {
        "model": "gpt-image-1",
        "prompt": "an axolotl reading a newspaper",
        "n": "1",
        "size": "1024x1536",
        "quality": "high",
    }
    files = [(name, filename, mime, data) for name, filename, mime, data in parts if filename]
    assert files == [
        ("image[]", "reference-1.png", "image/png", png),
        ("image[]", "reference-2.jpg", "image/jpeg", jpeg),
    ]


def test_it_sends_dall_e_2_its_single_image_field():
    handler = recording()
    ref = Reference(image_bytes("WEBP"), "image/webp")
    provider(handler).generate(request(upstream_model="dall-e-2", references=(ref,)))
    files = [(n, f, m) for n, f, m, _ in multipart(handler.sent[0]) if f]
    assert files == [("image", "reference-1.webp", "image/webp")]
    fields = {n: d.decode() for n, f, _, d in multipart(handler.sent[0]) if f is None}
    assert fields["response_format"] == "b64_json"


# --- a 200 ------------------------------------------------------------------------------


def test_it_reads_the_image_usage_and_request_id_of_a_gpt_image_answer():
    png = image_bytes(size=(64, 48))
    body = answer({"b64_json": b64(png)}, size="1024x1024", quality="high", output_format="png")
    handler = recording(body, headers={"x-request-id": "req_123abc"})
    result = provider(handler).generate(request())
    assert [(img.data, img.mime_type) for img in result.images] == [(png, "image/png")]
    assert result.usage == Usage(
        input_tokens=50, input_image_tokens=40, output_image_tokens=4160, total_tokens=4210
    )
    assert result.response_id == "req_123abc"
    assert result.extra == {
        "size": "1024x1024",
        "quality": "high",
        "output_format": "png",
        "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
    }
    assert result.text == "" and result.http_status == 200


@pytest.mark.parametrize(("fmt", "mime"), [("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_it_names_the_format_the_bytes_are_in(fmt, mime):
    result = parse_response(answer({"b64_json": b64(image_bytes(fmt))}))
    assert result.images[0].mime_type == mime


def test_it_keeps_dall_e_3_revised_prompt_as_the_result_text():
    item = {"b64_json": b64(image_bytes()), "revised_prompt": " A cheerful axolotl, newsprint. "}
    result = parse_response(answer(item, usage=None))
    assert result.text == "A cheerful axolotl, newsprint."
    assert result.usage == Usage()


def test_it_splits_image_from_text_output_when_the_usage_details_do():
    usage = {
        "input_tokens": 20,
        "output_tokens": 1300,
        "output_tokens_details": {"image_tokens": 1056, "text_tokens": 244},
        "total_tokens": 1320,
    }
    assert parse_response(answer(usage=usage)).usage == Usage(
        input_tokens=20, output_text_tokens=244, output_image_tokens=1056, total_tokens=1320
    )


def test_it_adds_up_a_missing_total():
    usage = {"input_tokens": 12, "output_tokens": 272}
    assert parse_response(answer(usage=usage)).usage.total_tokens == 284


def test_it_fetches_an_image_sent_as_a_url():
    png, asked = image_bytes(), []

    def fetch(url: str) -> bytes:
        asked.append(url)
        return png

    result = parse_response(answer({"url": "https://cdn.relay.example/i/1.png"}), fetch=fetch)
    assert asked == ["https://cdn.relay.example/i/1.png"]
    assert result.images[0].data == png


def fetch_failing(refused: bool):
    def fetch(url: str) -> bytes:
        raise FetchError("refused cdn.example: 10.0.0.5 is not a public address", refused=refused)

    return fetch


def test_it_reports_a_url_it_refuses_to_fetch_as_corrupt():
    body = answer({"url": "https://cdn.example/i/1.png?signature=s3cr3t"})
    with pytest.raises(ProviderError) as info:
        parse_response(body, fetch=fetch_failing(refused=True))
    err = info.value
    assert (err.kind, err.may_have_been_billed, err.usage.output_image_tokens) == (
        ErrorKind.CORRUPT,
        True,
        4160,
    )
    assert "10.0.0.5 is not a public address" in err.detail
    assert "s3cr3t" not in err.detail


def test_it_reports_a_url_it_could_not_download_as_transient():
    with pytest.raises(ProviderError) as info:
        parse_response(answer({"url": "https://cdn.example/1.png"}), fetch=fetch_failing(False))
    assert (info.value.kind, info.value.may_have_been_billed) == (ErrorKind.TRANSIENT, True)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765/files/1.png",  # a relay pointing us at our own sandbox port
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:10.0.0.1]/1.png",
    ],
)
def test_the_provider_fetches_no_url_into_private_networks(url):
    err = failure(replying(200, answer({"url": url})))
    assert (err.kind, err.may_have_been_billed) == (ErrorKind.CORRUPT, True)
    assert "refused" in err.detail


def test_it_takes_inline_images_only_when_it_has_no_fetcher():
    with pytest.raises(ProviderError) as info:
        parse_response(answer({"url": "https://cdn.example/1.png"}))
    assert info.value.kind == ErrorKind.CORRUPT


def test_it_reports_an_empty_data_list_as_no_image():
    with pytest.raises(ProviderError) as info:
        parse_response(answer(usage=USAGE) | {"data": []})
    err = info.value
    assert err.kind == ErrorKind.NO_IMAGE
    assert err.message == "The model did not produce an image. Rephrasing the prompt may help."
    assert err.may_have_been_billed and err.usage.input_tokens == 50 and err.retryable


# --- damaged answers -------------------------------------------------------------------


def corrupt(body, content_type: str = "application/json") -> ProviderError:
    if isinstance(body, dict | list):
        body = json.dumps(body).encode()
    err = failure(replying(200, body, headers={"content-type": content_type}))
    assert err.kind == ErrorKind.CORRUPT
    assert err.message == "The provider sent back a damaged response."
    assert err.may_have_been_billed and err.http_status == 200
    return err


def test_it_rejects_truncated_base64():
    err = corrupt(answer({"b64_json": b64(image_bytes())[:-3]}))
    assert "base64" in err.detail
    assert err.usage.output_image_tokens == 4160


def test_it_rejects_an_image_cut_short_on_a_base64_boundary():
    data = b64(image_bytes(size=(300, 300), color=(1, 2, 3)))
    err = corrupt(answer({"b64_json": data[: len(data) // 2 // 4 * 4]}))
    assert "damaged image/png image" in err.detail


def test_it_rejects_a_jpeg_cut_short_which_pillow_would_only_notice_on_load():
    jpeg = image_bytes("JPEG", size=(400, 300))
    err = corrupt(answer({"b64_json": b64(jpeg[: len(jpeg) // 2])}))
    assert "damaged image/jpeg image" in err.detail and "truncated" in err.detail


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"<html>not an image</html>", "bytes are not a PNG, JPEG or WebP image (25 bytes)"),
        (image_bytes("BMP"), "bytes are not a PNG, JPEG or WebP image"),
        (b"", "bytes are not a PNG, JPEG or WebP image (0 bytes)"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "bytes are not a image/webp image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "damaged image/png image"),
    ],
)
def test_it_rejects_bytes_that_are_not_a_png_jpeg_or_webp(data, problem):
    assert problem in corrupt(answer({"b64_json": b64(data)})).detail


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"created": 1, "data": [{"b64_json": ', "application/json"),
        (b"<html><body>Bad Gateway</body></html>", "text/html"),
        (b"[1, 2]", "application/json"),
        (b"", "application/json"),
        ({"created": 1}, "application/json"),
        ({"created": 1, "data": "nope"}, "application/json"),
        ({"created": 1, "data": ["nope"]}, "application/json"),
        ({"created": 1, "data": [{"revised_prompt": "x"}]}, "application/json"),
    ],
)
def test_it_rejects_a_200_that_is_not_an_images_answer(body, content_type):
    corrupt(body, content_type)


def test_it_classifies_an_error_envelope_wrapped_in_a_200():
    body = openai_error(
        "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
    )
    err = failure(replying(200, body))
    assert err.kind == ErrorKind.KEY_EXHAUSTED


# --- HTTP errors ------------------------------------------------------------------------

RATE_LIMITED = openai_error(
    "Rate limit reached for gpt-image-1 in organization org-x on images per minute (IPM): "
    "Limit 5, Used 5, Requested 1. Please try again in 12s.",
    "requests",
    "rate_limit_exceeded",
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({}, None),
    ],
)
def test_it_waits_as_long_as_a_rate_limit_asks(headers, expected):
    err = failure(replying(429, RATE_LIMITED, headers=headers))
    assert (err.kind, err.retry_after, err.http_status) == (ErrorKind.RATE_LIMITED, expected, 429)
    assert err.message == "The provider is receiving too many requests right now."
    assert not err.may_have_been_billed


def test_it_reads_retry_after_as_an_http_date():
    when = format_datetime(timezone.now() + timedelta(seconds=30), usegmt=True)
    err = classify_error(429, json.dumps(RATE_LIMITED), {"Retry-After": when})
    assert 25 <= err.retry_after <= 30


def test_it_rests_the_key_when_a_per_day_limit_is_reached():
    body = openai_error(
        "Rate limit reached for gpt-image-1 on requests per day (RPD): Limit 100, Used 100.",
        "requests",
        "rate_limit_exceeded",
    )
    err = classify_error(429, json.dumps(body), {"retry-after-ms": "60000"})
    assert (err.kind, err.message) == (
        ErrorKind.KEY_EXHAUSTED,
        "The provider key has used up its daily quota.",
    )


QUOTA = "You exceeded your current quota, please check your plan and billing details."
SAFETY = "Your request was rejected as a result of our safety system."
HTTP_ERRORS = [
    # status, body, kind, message, billed
    (429, openai_error(QUOTA, "insufficient_quota", "insufficient_quota"),
     ErrorKind.KEY_EXHAUSTED, "The provider key has run out of quota or credit.", False),
    (400, openai_error("Billing hard limit has been reached", "invalid_request_error",
                       "billing_hard_limit_reached"),
     ErrorKind.KEY_EXHAUSTED, "The provider key has run out of quota or credit.", False),
    (429, b"Too Many Requests", ErrorKind.RATE_LIMITED,
     "The provider is receiving too many requests right now.", False),
    (401, openai_error("Incorrect API key provided: sk-pro****cdef.", "invalid_request_error",
                       "invalid_api_key"),
     ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (401, b"", ErrorKind.KEY_INVALID, "The provider rejected the API key.", False),
    (403, openai_error("Country, region, or territory not supported", "request_forbidden",
                       "unsupported_country_region_territory"),
     ErrorKind.REFUSED, "The provider is not available from this location: Country, region, or "
     "territory not supported", False),
    (400, openai_error(SAFETY, "image_generation_user_error", "moderation_blocked"),
     ErrorKind.BLOCKED,
     "The provider's safety system rejected this request. Rephrasing the prompt may help.", False),
    (400, openai_error(SAFETY, "invalid_request_error", "content_policy_violation"),
     ErrorKind.BLOCKED,
     "The provider's safety system rejected this request. Rephrasing the prompt may help.", False),
    (400, openai_error("Invalid value: '1000x1000'. Supported values are: '1024x1024', "
                       "'1024x1536', '1536x1024', and 'auto'.", "invalid_request_error",
                       "invalid_value", "size"),
     ErrorKind.PERMANENT, "The provider rejected the request: Invalid value: '1000x1000'. "
     "Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'.", False),
    (404, openai_error("The model `gpt-image-9` does not exist or you do not have access to it.",
                       "invalid_request_error", "model_not_found"),
     ErrorKind.MODEL_GONE, "The provider no longer serves this model: The model `gpt-image-9` "
     "does not exist or you do not have access to it.", False),
    (422, {"detail": "unprocessable"}, ErrorKind.PERMANENT,
     "The provider rejected the request.", False),
    (413, b"<html>Request Entity Too Large</html>", ErrorKind.PERMANENT,
     "The request was too large for the provider (are the reference images too big?).", False),
    (500, openai_error("The server had an error while processing your request.", "server_error"),
     ErrorKind.TRANSIENT, "The provider had an internal error.", False),
    (502, b"<html><h1>502 Bad Gateway</h1></html>", ErrorKind.TRANSIENT,
     "The provider is unavailable right now.", False),
    (503, openai_error("The engine is currently overloaded, please try again later.",
                       "server_error"),
     ErrorKind.TRANSIENT, "The provider is overloaded right now.", False),
    (529, b"overloaded", ErrorKind.TRANSIENT, "The provider is unavailable right now.", False),
    (504, b"<html>504 Gateway Time-out</html>", ErrorKind.SLOW,
     "The provider took too long to answer.", True),
]  # fmt: skip


@pytest.mark.parametrize(("status", "body", "kind", "message", "billed"), HTTP_ERRORS)
def test_it_classifies_http_errors(status, body, kind, message, billed):
    err = failure(replying(status, body))
    assert (err.kind, err.message, err.may_have_been_billed) == (kind, message, billed)
    assert err.http_status == status
    assert str(status) in err.detail
    assert "<html>" not in err.message


def test_it_keeps_the_upstream_code_and_message_for_admins():
    err = failure(replying(*HTTP_ERRORS[6][:2]))
    assert err.detail == f"HTTP 400 moderation_blocked: {SAFETY}"


def test_it_reads_a_relay_error_given_as_a_bare_string():
    err = classify_error(400, json.dumps({"error": "prompt is required"}), {})
    assert err.message == "The provider rejected the request: prompt is required"


# --- transport failures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc_type", "kind", "billed"),
    [
        (httpx.ConnectError, ErrorKind.TRANSIENT, False),
        (httpx.ConnectTimeout, ErrorKind.TRANSIENT, False),
        (httpx.ReadTimeout, ErrorKind.SLOW, True),
        (httpx.WriteTimeout, ErrorKind.TRANSIENT, True),
        (httpx.RemoteProtocolError, ErrorKind.TRANSIENT, True),
    ],
)
def test_it_classifies_transport_failures(exc_type, kind, billed):
    err = failure(raising(exc_type, "connection trouble"))
    assert (err.kind, err.may_have_been_billed, err.http_status) == (kind, billed, None)
    assert exc_type.__name__ in err.detail
    assert err.__cause__ is None  # the httpx error holds the request headers, key included


# --- the key never leaks ------------------------------------------------------------------

LEAKY = [
    replying(400, openai_error(f"Bad key {KEY} for this relay", "invalid_request_error")),
    replying(401, f"invalid api key: {KEY}".encode()),
    replying(429, openai_error(f"{KEY} over quota", "requests", "rate_limit_exceeded")),
    replying(200, f"not json {KEY}".encode()),
    raising(httpx.ConnectError, f"proxy refused Bearer {KEY}"),
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
