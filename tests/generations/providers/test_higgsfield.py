"""The Higgsfield provider against Higgsfield's documented answers, on a mocked transport."""

from __future__ import annotations

import json

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    Pending,
    Reference,
    Timeouts,
    UpstreamJob,
    provider_class,
)
from generations.providers.higgsfield import (
    HiggsfieldProvider,
    build_input,
    classify_error,
    idempotency_key,
    read_options,
)
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

API = "https://platform.higgsfield.ai"
KEY = "3f1a9c2e-key-id:SECRETsecret0123456789abcdef"
RID = "d7e6c0f3-6699-4f6c-bb45-2ad7fd9158ff"
MODEL = "bytedance/seedream/v4/text-to-image"
SUBMIT = f"{API}/{MODEL}"
STATUS = f"{API}/requests/{RID}/status"
CANCEL = f"{API}/requests/{RID}/cancel"
OPTIONS = {
    "fields": {
        "prompt": "prompt",
        "aspect_ratio": "aspect_ratio",
        "resolution": "resolution",
        "image_urls": "input_images",
    }
}


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", MODEL)
    kwargs.setdefault("prompt", "a lighthouse at dusk")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "2K")
    return ImageRequest(**kwargs)


def answer(status: str = "queued", **extra) -> dict:
    return {
        "status": status,
        "request_id": RID,
        "status_url": STATUS,
        "cancel_url": CANCEL,
        **extra,
    }


def provider(handler, *, options=None, key: str = KEY) -> HiggsfieldProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HiggsfieldProvider(
        API, key, Timeouts(read=5.0), client=client, options=OPTIONS if options is None else options
    )


def job() -> UpstreamJob:
    return UpstreamJob(RID, {"status": STATUS, "cancel": CANCEL})


def test_it_is_the_registered_higgsfield_provider():
    assert provider_class("higgsfield") is HiggsfieldProvider
    assert HiggsfieldProvider.queued and "KEY_ID:KEY_SECRET" in str(HiggsfieldProvider.key_help)


def test_submit_posts_the_mapped_fields_with_the_key_and_an_idempotency_key():
    fake = FakeFal({("POST", SUBMIT): reply(200, answer())})
    pending = provider(fake).submit(request())
    assert isinstance(pending, Pending) and not pending.started
    assert pending.job == UpstreamJob(RID, {"status": STATUS, "cancel": CANCEL})
    sent = fake.sent[0]
    assert sent.headers["authorization"] == f"Key {KEY}"
    assert json.loads(sent.content) == {
        "prompt": "a lighthouse at dusk",
        "aspect_ratio": "16:9",
        "resolution": "2K",
    }
    key = sent.headers["idempotency-key"]
    assert 1 <= len(key) <= 255 and key.isascii() and " " not in key


def test_the_field_mapping_renames_fields_converts_sizes_and_adds_fixed_ones():
    options = read_options(
        {
            "fields": {"prompt": "text", "aspect_ratio": "ratio", "resolution": "quality"},
            "resolutions": {"2K": "1080p"},
            "extra": {"batch_size": 1},
        }
    )
    assert build_input(request(), options) == {
        "text": "a lighthouse at dusk",
        "ratio": "16:9",
        "quality": "1080p",
        "batch_size": 1,
    }


def test_references_go_as_image_url_objects_or_plain_urls():
    ref = Reference(image_bytes(), "image/png")
    objects = build_input(request(references=(ref,)), read_options(OPTIONS))
    assert objects["input_images"][0]["type"] == "image_url"
    assert objects["input_images"][0]["image_url"].startswith("data:image/png;base64,")
    plain = build_input(
        request(references=(ref,)), read_options({**OPTIONS, "image_format": "url"})
    )
    assert plain["input_images"][0].startswith("data:image/png;base64,")


def test_references_to_a_route_without_an_image_field_are_refused():
    options = read_options({"fields": {"prompt": "prompt"}})
    ref = Reference(image_bytes(), "image/png")
    err = failure(lambda: build_input(request(references=(ref,)), options))
    assert err.kind == ErrorKind.REFUSED and "reference" in err.message


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"feilds": {}}, "unknown settings feilds"),
        ({"fields": {"text": "prompt"}}, "takes only"),
        ({"fields": {"aspect_ratio": "ar"}}, "prompt"),
        ({"fields": {"prompt": ""}}, "field names"),
        ({"fields": {"prompt": "p", "aspect_ratio": "p"}}, "same model field"),
        ({"image_format": "base64"}, "image_format"),
        ({"resolutions": {"1K": 1024}}, "resolutions"),
        ({"extra": {"prompt": "x"}}, "extra"),
    ],
)
def test_wrong_options_are_refused_with_a_clear_reason(options, said):
    err = failure(lambda: read_options(options))
    assert err.kind == ErrorKind.REFUSED
    assert "options are wrong" in err.message and said in err.message


def test_the_same_intent_and_body_give_the_same_key_and_a_changed_body_another():
    body = {"prompt": "x"}
    seeded = ImageRequest(MODEL, "x", "1:1", idempotency_key="nanoweb-42-r7-0")
    first = idempotency_key(seeded, SUBMIT, body, None)
    assert first == idempotency_key(seeded, SUBMIT, {"prompt": "x"}, None)
    assert first.startswith("nanoweb-42-r7-0-")
    assert first != idempotency_key(seeded, SUBMIT, {"prompt": "y"}, None)
    assert first != idempotency_key(seeded, SUBMIT, body, "https://hooks.example/x")
    # Without a seed from the engine two identical jobs never share a key.
    plain = request()
    assert idempotency_key(plain, SUBMIT, body, None) != idempotency_key(plain, SUBMIT, body, None)


def test_a_lost_submit_answer_is_sent_again_with_the_same_key():
    calls = []

    def flaky(req: httpx.Request) -> httpx.Response:
        calls.append(req.headers["idempotency-key"])
        if len(calls) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=req)
        return reply(200, answer())

    pending = provider(flaky).submit(request())
    assert isinstance(pending, Pending) and len(calls) == 2 and calls[0] == calls[1]


def test_a_webhook_url_is_passed_as_hf_webhook():
    fake = FakeFal({("POST", SUBMIT): reply(200, answer())})
    provider(fake).submit(request(), webhook_url="https://nanoweb.example/hooks/higgsfield/t")
    assert fake.sent[0].url.params["hf_webhook"] == "https://nanoweb.example/hooks/higgsfield/t"


def test_polling_reads_queued_in_progress_and_completed_with_its_images():
    image = image_bytes()
    done = answer("completed", images=[{"url": f"{API}/files/out.png"}])
    fake = FakeFal(
        {
            ("GET", STATUS): [
                reply(200, answer("queued")),
                reply(200, answer("in_progress")),
                reply(200, done),
            ],
            ("GET", f"{API}/files/out.png"): reply(200, image, {"content-type": "image/png"}),
        }
    )
    p = provider(fake)
    assert p.poll(job()).started is False
    assert p.poll(job()).started is True
    result = p.poll(job())
    assert isinstance(result, ImageResult) and result.images[0].data == image
    assert result.response_id == RID and result.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("status", "kind", "billed"),
    [
        ("nsfw", ErrorKind.BLOCKED, False),
        ("failed", ErrorKind.TRANSIENT, False),
        ("canceled", ErrorKind.TRANSIENT, False),
    ],
)
def test_requests_ending_without_images_are_classified_and_not_billed(status, kind, billed):
    body = answer(status, error="Generation fail message") if status == "failed" else answer(status)
    fake = FakeFal({("GET", STATUS): reply(200, body)})
    err = failure(lambda: provider(fake).poll(job()))
    assert err.kind == kind and err.may_have_been_billed is billed


def test_a_completed_request_without_images_is_no_image():
    fake = FakeFal({("GET", STATUS): reply(200, answer("completed", images=[]))})
    err = failure(lambda: provider(fake).poll(job()))
    assert err.kind == ErrorKind.NO_IMAGE and err.may_have_been_billed


def test_an_unknown_status_is_corrupt():
    fake = FakeFal({("GET", STATUS): reply(200, answer("exploded"))})
    assert failure(lambda: provider(fake).poll(job())).kind == ErrorKind.CORRUPT


def test_cancel_is_true_while_queued_and_false_once_started():
    assert provider(FakeFal({("POST", CANCEL): reply(202, b"")})).cancel(job()) is True
    started = FakeFal({("POST", CANCEL): reply(400, {"detail": "Request can not be canceled"})})
    assert provider(started).cancel(job()) is False


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "retry_after"),
    [
        (401, {"detail": "Invalid credentials"}, {}, ErrorKind.KEY_INVALID, None),
        (403, {"detail": "Not enough credits"}, {}, ErrorKind.OUT_OF_CREDIT, None),
        (
            429,
            {"detail": "Queue is full", "code": "account_queue_full", "limit": 8},
            {"Retry-After": "7"},
            ErrorKind.RATE_LIMITED,
            7.0,
        ),
        (
            400,
            {"detail": "Maximum number of concurrent requests (4) has been reached"},
            {},
            ErrorKind.RATE_LIMITED,
            None,
        ),
        (404, {"detail": "Model not found"}, {}, ErrorKind.MODEL_GONE, None),
        (
            422,
            {"detail": [{"loc": ["body", "prompt"], "msg": "Field required", "type": "missing"}]},
            {},
            ErrorKind.PERMANENT,
            None,
        ),
        (423, {"detail": "Model is temporarily blocked"}, {}, ErrorKind.TRANSIENT, None),
        (500, {"detail": "Internal server error"}, {}, ErrorKind.TRANSIENT, None),
        (503, {"detail": "Service unavailable"}, {}, ErrorKind.TRANSIENT, None),
        (504, b"<html>gateway timeout</html>", {}, ErrorKind.SLOW, None),
        (400, {"detail": "Invalid aspect ratio"}, {}, ErrorKind.PERMANENT, None),
    ],
)
def test_every_documented_error_has_its_class(status, body, headers, kind, retry_after):
    fake = FakeFal({("POST", SUBMIT): reply(status, body, headers)})
    err = failure(lambda: provider(fake).submit(request()))
    assert err.kind == kind and err.retry_after == retry_after and err.http_status == status


def test_validation_errors_name_the_field_and_the_correlation_id_is_kept():
    err = classify_error(
        422,
        json.dumps({"detail": [{"loc": ["body", "prompt"], "msg": "Field required"}]}),
        {"X-Correlation-ID": "corr-123"},
    )
    assert "prompt: Field required" in err.message and "corr-123" in err.detail


def test_a_lost_request_at_poll_is_transient():
    fake = FakeFal({("GET", STATUS): reply(404, {"detail": "Request not found"})})
    assert failure(lambda: provider(fake).poll(job())).kind == ErrorKind.TRANSIENT


def test_a_key_without_its_secret_part_is_refused_before_any_call():
    fake = FakeFal({})
    err = failure(lambda: provider(fake, key="justonepart").submit(request()))
    assert err.kind == ErrorKind.KEY_INVALID and not fake.sent


def test_the_key_and_its_secret_are_scrubbed_from_errors():
    secret = KEY.partition(":")[2]
    fake = FakeFal({("POST", SUBMIT): reply(400, {"detail": f"bad secret {secret} in {KEY}"})})
    err = failure(lambda: provider(fake).submit(request()))
    assert secret not in err.message + err.detail and "[key]" in err.detail


def test_the_key_is_never_sent_off_the_configured_origin():
    fake = FakeFal({})
    stray = UpstreamJob(RID, {"status": "https://evil.example/requests/x/status"})
    assert failure(lambda: provider(fake).poll(stray)).kind == ErrorKind.CORRUPT
    assert not fake.sent


def test_test_connection_is_a_free_status_call_for_a_request_that_cannot_exist():
    nothing = f"{API}/requests/00000000-0000-0000-0000-000000000000/status"
    ok = FakeFal({("GET", nothing): reply(404, {"detail": "Request not found"})})
    assert "The key works" in provider(ok).test_connection()
    bad = FakeFal({("GET", nothing): reply(401, {"detail": "Invalid credentials"})})
    assert failure(lambda: provider(bad).test_connection()).kind == ErrorKind.KEY_INVALID
    wrong = failure(lambda: provider(ok, options={"fields": {}}).test_connection())
    assert wrong.kind == ErrorKind.REFUSED
