"""The Stability AI provider against Stability's documented answers, on a mocked transport."""

from __future__ import annotations

import base64
import json
from email.parser import BytesParser
from email.policy import HTTP

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers.base import ImageRequest, Reference, Timeouts, provider_class
from generations.providers.stability import StabilityProvider, build_form, classify_error
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

API = "https://api.stability.ai"
KEY = "sk-SECRETstability0123456789abcdef"
ULTRA = f"{API}/v2beta/stable-image/generate/ultra"
SD3 = f"{API}/v2beta/stable-image/generate/sd3"
CORE = f"{API}/v2beta/stable-image/generate/core"


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "ultra")
    kwargs.setdefault("prompt", "a lighthouse at dusk")
    kwargs.setdefault("aspect_ratio", "16:9")
    return ImageRequest(**kwargs)


def provider(handler, *, options=None) -> StabilityProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return StabilityProvider(API, KEY, Timeouts(read=5.0), client=client, options=options)


def image_reply(reason: str = "SUCCESS", data: bytes | None = None) -> httpx.Response:
    headers = {"content-type": "image/png", "finish-reason": reason, "seed": "1234"}
    headers["x-request-id"] = "req-1"
    return httpx.Response(200, content=data or image_bytes(), headers=headers)


def form_of(sent: httpx.Request) -> tuple[dict, dict]:
    head = f"Content-Type: {sent.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + sent.read())
    fields, files = {}, {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if part.get_filename():
            files[name] = (part.get_content_type(), payload)
        else:
            fields[name] = payload.decode()
    return fields, files


def test_it_is_the_registered_stability_provider():
    assert provider_class("stability") is StabilityProvider
    assert not StabilityProvider.queued and "sk-" in str(StabilityProvider.key_help)


def test_ultra_text_to_image_is_a_multipart_post_asking_for_image_bytes():
    fake = FakeFal({("POST", ULTRA): image_reply()})
    result = provider(fake).generate(request())
    sent = fake.sent[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["accept"] == "image/*"
    fields, files = form_of(sent)
    assert fields == {
        "prompt": "a lighthouse at dusk",
        "output_format": "png",
        "aspect_ratio": "16:9",
    }
    assert not files
    assert result.images[0].mime_type == "image/png" and result.extra == {"seed": "1234"}
    assert result.response_id == "req-1"


def test_an_sd3_model_goes_to_the_sd3_endpoint_with_its_model_field():
    fake = FakeFal({("POST", SD3): image_reply()})
    provider(fake).generate(request(upstream_model="sd3.5-large-turbo"))
    fields, _ = form_of(fake.sent[0])
    assert fields["model"] == "sd3.5-large-turbo"


def test_a_reference_makes_it_image_to_image_without_an_aspect_ratio():
    ref = Reference(image_bytes(size=(96, 64)), "image/png")
    fake = FakeFal({("POST", SD3): image_reply()})
    provider(fake, options={"strength": 0.35}).generate(
        request(upstream_model="sd3.5-large", references=(ref,))
    )
    fields, files = form_of(fake.sent[0])
    assert fields["mode"] == "image-to-image" and fields["strength"] == "0.35"
    assert "aspect_ratio" not in fields
    assert files["image"] == ("image/png", ref.data)


def test_ultra_takes_its_reference_with_the_default_strength():
    ref = Reference(image_bytes(), "image/png")
    endpoint, data, files = build_form(request(references=(ref,)), {})
    assert endpoint == "ultra" and data["strength"] == "0.7" and "mode" not in data
    assert "image" in files


@pytest.mark.parametrize(
    ("model", "refs"),
    [("core", 1), ("ultra", 2)],
)
def test_core_takes_no_reference_and_nothing_takes_two(model, refs):
    ref = Reference(image_bytes(), "image/png")
    err = failure(lambda: build_form(request(upstream_model=model, references=(ref,) * refs), {}))
    assert err.kind == ErrorKind.PERMANENT


def test_a_wrong_strength_option_is_refused():
    ref = Reference(image_bytes(), "image/png")
    err = failure(lambda: build_form(request(references=(ref,)), {"strength": 3}))
    assert err.kind == ErrorKind.REFUSED and "strength" in err.message


def test_an_unknown_model_id_is_model_gone_before_any_call():
    fake = FakeFal({})
    err = failure(lambda: provider(fake).generate(request(upstream_model="dall-e-3")))
    assert err.kind == ErrorKind.MODEL_GONE and not fake.sent


def test_a_content_filtered_finish_is_blocked():
    fake = FakeFal({("POST", CORE): image_reply("CONTENT_FILTERED")})
    err = failure(lambda: provider(fake).generate(request(upstream_model="core")))
    assert err.kind == ErrorKind.BLOCKED and "moderation" in err.message


def test_the_json_answer_is_read_too():
    data = image_bytes("JPEG")
    body = {"image": base64.b64encode(data).decode(), "finish_reason": "SUCCESS", "seed": 9}
    headers = {"content-type": "application/json; type=image/jpeg"}
    fake = FakeFal({("POST", ULTRA): httpx.Response(200, json=body, headers=headers)})
    result = provider(fake).generate(request())
    assert result.images[0].data == data and result.images[0].mime_type == "image/jpeg"
    filtered = {**body, "finish_reason": "CONTENT_FILTERED"}
    blocked = FakeFal({("POST", ULTRA): httpx.Response(200, json=filtered, headers=headers)})
    assert failure(lambda: provider(blocked).generate(request())).kind == ErrorKind.BLOCKED


def test_damaged_answers_are_corrupt():
    cut = FakeFal({("POST", ULTRA): image_reply(data=image_bytes()[:40])})
    assert failure(lambda: provider(cut).generate(request())).kind == ErrorKind.CORRUPT
    headers = {"content-type": "application/json"}
    half = FakeFal(
        {("POST", ULTRA): httpx.Response(200, content=b'{"image": "iVBO', headers=headers)}
    )
    assert failure(lambda: provider(half).generate(request())).kind == ErrorKind.CORRUPT


def body(name: str, *errors: str) -> dict:
    return {"id": "a1b2c3", "name": name, "errors": list(errors)}


@pytest.mark.parametrize(
    ("status", "answer", "kind"),
    [
        (400, body("bad_request", "aspect_ratio: must be one of 16:9, 1:1"), ErrorKind.PERMANENT),
        (401, body("unauthorized", "Incorrect API key provided"), ErrorKind.KEY_INVALID),
        (402, body("payment_required", "You lack sufficient credits"), ErrorKind.OUT_OF_CREDIT),
        (
            403,
            body("content_moderation", "Your request was flagged by our content moderation system"),
            ErrorKind.BLOCKED,
        ),
        (404, body("not_found", "model not found"), ErrorKind.MODEL_GONE),
        (
            413,
            body("payload_too_large", "Your request was larger than 10MiB."),
            ErrorKind.PERMANENT,
        ),
        (
            422,
            body("invalid_language", "English is the only supported language"),
            ErrorKind.PERMANENT,
        ),
        (422, body("invalid_request", "not available in your region"), ErrorKind.REFUSED),
        (500, body("internal_error", "An unexpected server error"), ErrorKind.TRANSIENT),
        (503, b"upstream connect error", ErrorKind.TRANSIENT),
        (504, b"gateway timeout", ErrorKind.SLOW),
    ],
)
def test_every_documented_error_has_its_class(status, answer, kind):
    fake = FakeFal({("POST", ULTRA): reply(status, answer)})
    err = failure(lambda: provider(fake).generate(request()))
    assert err.kind == kind and err.http_status == status


def test_a_rate_limit_waits_the_documented_timeout_or_retry_after():
    said = json.dumps(
        body(
            "rate_limit_exceeded",
            "You have exceeded the rate limit of 150 requests within a 10 second period, and "
            "have been timed out for 60 seconds.",
        )
    )
    assert classify_error(429, said, {}).retry_after == 60.0
    assert classify_error(429, said, {"Retry-After": "3"}).retry_after == 3.0
    assert classify_error(429, said, {}).kind == ErrorKind.RATE_LIMITED


def test_the_key_is_scrubbed_from_errors():
    fake = FakeFal({("POST", ULTRA): reply(400, body("bad_request", f"key {KEY} is odd"))})
    err = failure(lambda: provider(fake).generate(request()))
    assert KEY not in err.message + err.detail


def test_test_connection_reads_the_free_balance():
    balance = f"{API}/v1/user/balance"
    ok = FakeFal({("GET", balance): reply(200, {"credits": 25.5})})
    said = provider(ok).test_connection()
    assert "25.5 credits" in said and "$0.26" in said
    bad = FakeFal({("GET", balance): reply(401, body("unauthorized", "Incorrect API key"))})
    assert failure(lambda: provider(bad).test_connection()).kind == ErrorKind.KEY_INVALID
