"""The Freepik (Magnific) provider against Freepik's documented answers, on a mocked
transport, and its webhook signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    Pending,
    ProviderError,
    Reference,
    Timeouts,
    UpstreamJob,
    WebhookRejected,
    provider_class,
)
from generations.providers.freepik import (
    FreepikProvider,
    build_request,
    classify_error,
    signature_of,
)
from tests.generations.providers.test_openai_images import image_bytes

API = "https://api.freepik.com"
KEY = "FPSX0123456789SECRETabcdefabcdef"
TASK = "046b6c7f-0b8a-43b9-b35d-6489e6daee91"
PRO = "text-to-image/nano-banana-pro"
SECRET = "whsec-freepik-dashboard-secret"
NOW = 1_790_000_000


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", PRO)
    kwargs.setdefault("prompt", "a sunset over mountains")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "2K")
    return ImageRequest(**kwargs)


def task(status: str = "COMPLETED", generated=None, **extra) -> dict:
    if generated is None:
        generated = [f"{API}/files/{TASK}.png"] if status == "COMPLETED" else []
    return {"data": {"task_id": TASK, "status": status, "generated": generated, **extra}}


def provider(handler, base: str = API, **options) -> FreepikProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return FreepikProvider(base, KEY, Timeouts(read=5.0), client=client, options=options)


def answering(status: int, body, seen: list | None = None):
    def handler(req: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(req)
        if req.url.path.startswith("/files/"):
            return httpx.Response(200, content=image_bytes("PNG"))
        if isinstance(body, bytes):
            return httpx.Response(status, content=body)
        return httpx.Response(status, json=body)

    return handler


def job() -> UpstreamJob:
    return UpstreamJob(TASK, {"get": f"{API}/v1/ai/{PRO}/{TASK}"})


def test_it_is_the_registered_freepik_provider():
    assert provider_class("freepik") is FreepikProvider
    assert "x-freepik-api-key" in str(FreepikProvider.key_help)


def test_the_pro_body_takes_ratio_resolution_reference_objects_and_the_webhook():
    png = image_bytes("PNG")
    body = build_request(request(references=(Reference(png, "image/png"),)), "https://me/hook")
    assert body == {
        "prompt": "a sunset over mountains",
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "reference_images": [{"image": base64.b64encode(png).decode(), "mime_type": "image/png"}],
        "webhook_url": "https://me/hook",
    }


def test_nano_banana_takes_bare_references_and_refuses_what_it_cannot_shape():
    png = image_bytes("PNG")
    flash = "gemini-2-5-flash-image-preview"
    refs = (Reference(png, "image/png"),)
    body = build_request(request(upstream_model=flash, aspect_ratio="1:1", image_size=None,
                                 references=refs))  # fmt: skip
    assert body == {"prompt": "a sunset over mountains",
                    "reference_images": [base64.b64encode(png).decode()]}  # fmt: skip
    wrong_ratio = request(upstream_model=flash, image_size=None)
    wrong_size = request(upstream_model=flash, aspect_ratio="1:1")  # 2K: it makes 1K only
    for wrong in (wrong_ratio, wrong_size):
        with pytest.raises(ProviderError) as caught:
            build_request(wrong)
        assert caught.value.kind == ErrorKind.REFUSED


def test_nano_banana_2_asks_for_search_only_when_grounded():
    flash = "text-to-image/nano-banana-pro-flash"
    assert build_request(request(upstream_model=flash, grounding=True))["use_google_search_tool"]
    assert "use_google_search_tool" not in build_request(request(grounding=True))


def test_too_many_references_are_refused():
    refs = tuple(Reference(image_bytes("PNG"), "image/png") for _ in range(4))
    with pytest.raises(ProviderError) as caught:
        build_request(request(upstream_model="gemini-2-5-flash-image-preview",
                              aspect_ratio="1:1", image_size=None, references=refs))  # fmt: skip
    assert caught.value.kind == ErrorKind.REFUSED


def test_submit_sends_the_key_and_a_descriptive_user_agent():
    seen: list[httpx.Request] = []
    answer = provider(answering(200, task("CREATED"), seen)).submit(request())
    assert isinstance(answer, Pending) and answer.job == job() and not answer.started
    sent = seen[0]
    assert sent.url == f"{API}/v1/ai/{PRO}" and sent.headers["x-freepik-api-key"] == KEY
    assert sent.headers["user-agent"].startswith("nanoweb/")


def test_magnific_takes_its_own_key_header_and_the_agent_can_be_set():
    seen: list[httpx.Request] = []
    magnific = "https://api.magnific.com"
    provider(answering(200, task("CREATED"), seen), magnific, user_agent="acme/2").submit(request())
    assert seen[0].headers["x-magnific-api-key"] == KEY
    assert seen[0].headers["user-agent"] == "acme/2"


def test_in_progress_is_pending_and_started():
    answer = provider(answering(200, task("IN_PROGRESS"))).poll(job())
    assert isinstance(answer, Pending) and answer.started and answer.job == job()


def test_completed_downloads_the_image():
    result = provider(answering(200, task())).poll(job())
    assert isinstance(result, ImageResult) and result.images[0].mime_type == "image/png"
    assert result.response_id == TASK


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (task(generated=[]), ErrorKind.NO_IMAGE),
        (task(generated=[], has_nsfw=[True]), ErrorKind.BLOCKED),
        (task("FAILED", error="The prompt violates our content policy."), ErrorKind.BLOCKED),
        (task("FAILED", error="The generation failed."), ErrorKind.TRANSIENT),
        (task("LOST"), ErrorKind.CORRUPT),
        ({"data": {}}, ErrorKind.CORRUPT),
        (b"{not json", ErrorKind.CORRUPT),
    ],
)
def test_tasks_that_are_no_image_are_classified(body, kind):
    with pytest.raises(ProviderError) as caught:
        provider(answering(200, body)).poll(job())
    assert caught.value.kind == kind


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (403, b"<html><title>Penalty Box</title></html>", ErrorKind.TRANSIENT),
        (401, {"message": "Invalid API key"}, ErrorKind.KEY_INVALID),
        (403, {"message": "Forbidden"}, ErrorKind.KEY_INVALID),
        (402, {"message": "Insufficient credits"}, ErrorKind.OUT_OF_CREDIT),
        (429, {"message": "Rate limit exceeded"}, ErrorKind.RATE_LIMITED),
        (429, {"message": "You have exceeded your daily limit"}, ErrorKind.KEY_EXHAUSTED),
        (400, {"message": "Prompt blocked by content policy"}, ErrorKind.BLOCKED),
        (404, {"message": "Not found"}, ErrorKind.MODEL_GONE),
        (
            400,
            {
                "message": "Parameter validation failed",
                "invalid_params": [{"field": "aspect_ratio", "reason": "bad"}],
            },
            ErrorKind.PERMANENT,
        ),  # fmt: skip
        (500, {"message": "Internal server error"}, ErrorKind.TRANSIENT),
        (503, {"message": "Service unavailable"}, ErrorKind.TRANSIENT),
        (504, {"message": "Gateway timeout"}, ErrorKind.SLOW),
    ],
)
def test_every_error_answer_is_classified(status, body, kind):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert classify_error(status, raw, {"retry-after": "3"}).kind == kind


def test_a_lost_task_on_poll_is_transient_and_the_reasons_are_kept():
    lost = classify_error(404, b'{"message": "Task not found"}', None, "poll")
    assert lost.kind == ErrorKind.TRANSIENT
    body = {"message": "Parameter validation failed",
            "invalid_params": [{"field": "resolution", "reason": "must be 1K"}]}  # fmt: skip
    assert "resolution: must be 1K" in classify_error(400, json.dumps(body), None).message


def test_the_key_never_leaks_into_an_error():
    with pytest.raises(ProviderError) as caught:
        provider(answering(400, {"message": f"bad key {KEY}"})).submit(request())
    assert KEY not in caught.value.message and KEY not in caught.value.detail


def test_the_key_is_never_sent_off_origin():
    seen: list[httpx.Request] = []
    with pytest.raises(ProviderError):
        provider(answering(200, task(), seen)).poll(UpstreamJob(TASK, {"get": "https://x.io/t"}))
    assert seen == []


def test_the_key_check_spends_nothing_and_says_so():
    seen: list[httpx.Request] = []
    assert "billed" in provider(answering(200, {}, seen)).test_connection() and seen == []


# --- webhooks -----------------------------------------------------------------------


def delivery(body: bytes, *, secret: str = SECRET, stamp: int = NOW, wid: str = "wh_1") -> dict:
    signature = signature_of(secret, wid, str(stamp), body)
    return {"webhook-id": wid, "webhook-timestamp": str(stamp),
            "webhook-signature": f"v0,bogus v1,{signature}"}  # fmt: skip


def verify(headers: dict, body: bytes, secret: str = SECRET):
    return FreepikProvider.verify_webhook(headers, body, secret=secret, keys_url="", now=NOW)


def test_a_signed_delivery_names_its_task():
    body = json.dumps(task()).encode()
    event = verify(delivery(body), body)
    assert (event.delivery_id, event.upstream_id) == ("wh_1", TASK)
    flat = json.dumps(task()["data"]).encode()  # the body without the data wrapper
    assert verify(delivery(flat), flat).upstream_id == TASK


def test_the_signature_is_keyed_with_the_secret_s_bytes():
    # docs.freepik.com/webhooks: HMAC-SHA256 over "id.timestamp.body", base64 of the digest
    expected = hmac.new(SECRET.encode(), b"wh_1.1790000000.{}", hashlib.sha256).digest()
    assert signature_of(SECRET, "wh_1", "1790000000", b"{}") == base64.b64encode(expected).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "webhook-id": "wh_2"}, b),
        lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b),
        lambda h, b: (delivery(b, stamp=NOW - 600), b),
        lambda h, b: (delivery(b, secret="another"), b),
    ],
)
def test_a_delivery_that_does_not_hold_is_rejected(tamper):
    body = json.dumps(task()).encode()
    headers, body = tamper(delivery(body), body)
    with pytest.raises(WebhookRejected):
        verify(headers, body)


def test_no_secret_configured_rejects_everything():
    body = json.dumps(task()).encode()
    with pytest.raises(WebhookRejected):
        verify(delivery(body), body, secret="")
