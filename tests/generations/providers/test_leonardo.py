"""The Leonardo.ai provider against Leonardo's documented answers, on a mocked transport."""

from __future__ import annotations

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
    provider_class,
)
from generations.providers.leonardo import (
    LeonardoProvider,
    allowed_size,
    build_request,
    classify_error,
)
from tests.generations.providers.test_openai_images import image_bytes

API = "https://cloud.leonardo.ai/api/rest"
KEY = "5f1c8d2e-SECRET-4b7a-9e3c-0123456789ab"
GID = "0b6c3f1e-7a2d-4e59-9c1b-2f8d7e6a5b4c"
IMAGE_URL = f"{API}/files/{GID}.jpg"  # on the base origin: fetched with the client


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "gemini-image-2")
    kwargs.setdefault("prompt", "a koala in a purple scarf")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "1K")
    return ImageRequest(**kwargs)


def generation(status: str = "COMPLETE", images=None) -> dict:
    if images is None:
        images = [{"id": "img-1", "url": IMAGE_URL, "nsfw": False, "likeCount": 0}]
    return {
        "generations_by_pk": {
            "id": GID,
            "status": status,
            "generated_images": images if status == "COMPLETE" else [],
            "imageWidth": 1376,
            "imageHeight": 768,
            "modelId": "gemini-image-2",
            "prompt": "a koala in a purple scarf",
        }
    }


class FakeLeonardo:
    """Answers the calls a generation makes, recording each request."""

    def __init__(self, created=None, polled=None) -> None:
        self.created = created or (200, {"generate": {"generationId": GID, "apiCreditCost": 80}})
        self.polled = polled or (200, generation())
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        path = req.url.path
        if path == "/api/rest/v1/init-image":
            target = {"id": "init-1", "url": "https://s3.example.com/up", "key": "k"}
            target["fields"] = json.dumps({"key": "init/1.png", "policy": "p"})
            return httpx.Response(200, json={"uploadInitImage": target})
        if req.url.host == "s3.example.com":
            return httpx.Response(204)
        if path == "/api/rest/v2/generations":
            return httpx.Response(self.created[0], json=self.created[1])
        if path == f"/api/rest/v1/generations/{GID}":
            return httpx.Response(self.polled[0], json=self.polled[1])
        if path.startswith("/api/rest/files/"):
            return httpx.Response(200, content=image_bytes("JPEG"))
        return httpx.Response(404, json={"error": "resource does not exist"})


def provider(handler, **options) -> LeonardoProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return LeonardoProvider(API, KEY, Timeouts(read=5.0), client=client, options=options)


def job(**urls) -> UpstreamJob:
    return UpstreamJob(GID, {"get": f"{API}/v1/generations/{GID}", **urls})


def test_it_is_the_registered_leonardo_provider():
    assert provider_class("leonardo") is LeonardoProvider
    assert "Bearer" in str(LeonardoProvider.key_help) and "100" in str(LeonardoProvider.key_help)


def test_the_create_body_takes_an_allowed_pair_for_the_ratio_and_size():
    body = build_request(request(image_size="2K"), {})
    assert body == {
        "model": "gemini-image-2",
        "parameters": {
            "prompt": "a koala in a purple scarf",
            "width": 2752,
            "height": 1536,
            "quantity": 1,
            "prompt_enhance": "OFF",
        },
        "public": False,
    }


def test_a_pair_it_does_not_list_is_refused_rather_than_squared_upstream():
    with pytest.raises(ProviderError) as caught:
        build_request(request(upstream_model="gemini-2.5-flash-image", image_size="2K"), {})
    assert caught.value.kind == ErrorKind.REFUSED and "16:9" in caught.value.message
    with pytest.raises(ProviderError):
        build_request(request(upstream_model="some-new-model"), {})


def test_the_admin_s_sizes_and_styles_replace_the_defaults():
    options = {"sizes": {"gemini-image-2": {"16:9": {"1K": [1344, 768]}}}, "style_ids": ["s1"]}
    assert allowed_size("gemini-image-2", "16:9", "1K", options) == (1344, 768)
    assert allowed_size("gemini-image-2", "1:1", "1K", options) is None  # the admin's table rules
    assert build_request(request(), options)["parameters"]["style_ids"] == ["s1"]


def test_submit_uploads_references_then_creates_and_keeps_the_credit_cost():
    fake = FakeLeonardo()
    png = image_bytes("PNG")
    answer = provider(fake, reference_strength="high").submit(
        request(references=(Reference(png, "image/png"),))
    )
    assert isinstance(answer, Pending)
    assert answer.job == job(credits="80")
    init, upload, create = fake.requests
    assert json.loads(init.content) == {"extension": "png"}
    assert "authorization" not in upload.headers  # the presigned fields are the credential
    assert b'name="policy"' in upload.content and png in upload.content
    sent = json.loads(create.content)
    assert sent["parameters"]["guidances"] == {
        "image_reference": [{"image": {"id": "init-1", "type": "UPLOADED"}, "strength": "HIGH"}]
    }
    assert create.headers["authorization"] == f"Bearer {KEY}"


def test_a_reference_of_another_type_is_permanent():
    with pytest.raises(ProviderError) as caught:
        provider(FakeLeonardo()).submit(request(references=(Reference(b"GIF89a", "image/gif"),)))
    assert caught.value.kind == ErrorKind.PERMANENT


def test_an_upload_target_off_https_is_refused():
    def handler(req):
        if req.url.path.endswith("/init-image"):
            target = {"id": "i", "url": "http://10.0.0.1/up", "fields": "{}"}
            return httpx.Response(200, json={"uploadInitImage": target})
        raise AssertionError("nothing else may be called")

    with pytest.raises(ProviderError) as caught:
        provider(handler).submit(request(references=(Reference(image_bytes("PNG"), "image/png"),)))
    assert caught.value.kind == ErrorKind.CORRUPT


def test_pending_is_polled_again():
    answer = provider(FakeLeonardo(polled=(200, generation("PENDING")))).poll(job())
    assert isinstance(answer, Pending) and answer.job == job()


def test_complete_downloads_the_image_and_reports_credits():
    result = provider(FakeLeonardo()).poll(job(credits="80"))
    assert isinstance(result, ImageResult)
    assert result.images[0].mime_type == "image/jpeg"
    assert result.extra == {"credits": "80"} and result.model_version == "gemini-image-2"


@pytest.mark.parametrize(
    ("polled", "kind"),
    [
        (generation(images=[{"id": "i", "url": IMAGE_URL, "nsfw": True}]), ErrorKind.BLOCKED),
        (generation(images=[]), ErrorKind.NO_IMAGE),
        (generation("FAILED"), ErrorKind.TRANSIENT),
        ({"generations_by_pk": None}, ErrorKind.TRANSIENT),
        (generation("EXPLODED"), ErrorKind.CORRUPT),
        ({"unexpected": 1}, ErrorKind.CORRUPT),
    ],
)
def test_finished_generations_that_are_no_image_are_classified(polled, kind):
    with pytest.raises(ProviderError) as caught:
        provider(FakeLeonardo(polled=(200, polled))).poll(job())
    assert caught.value.kind == kind


def test_a_create_answer_without_an_id_is_corrupt():
    with pytest.raises(ProviderError) as caught:
        provider(FakeLeonardo(created=(200, {"generate": {}}))).submit(request())
    assert caught.value.kind == ErrorKind.CORRUPT


def error_body(text: str) -> bytes:
    return json.dumps({"error": text, "path": "$", "code": "unexpected"}).encode()


@pytest.mark.parametrize(
    ("status", "text", "kind"),
    [
        (400, "not enough api tokens userId: 3aa5736c-…", ErrorKind.OUT_OF_CREDIT),
        (401, "Authentication hook unauthorized this request", ErrorKind.KEY_INVALID),
        (403, "forbidden", ErrorKind.KEY_INVALID),
        (429, "Too many requests", ErrorKind.RATE_LIMITED),
        (400, "Your prompt was flagged by our content moderation filter.", ErrorKind.BLOCKED),
        (400, "model not found: gemini-image-9", ErrorKind.MODEL_GONE),
        (404, "resource does not exist", ErrorKind.MODEL_GONE),
        (400, "Unexpected variable prompt_enhanced", ErrorKind.PERMANENT),
        (500, "Internal server error", ErrorKind.TRANSIENT),
        (503, "Service temporarily unavailable", ErrorKind.TRANSIENT),
        (504, "timeout", ErrorKind.SLOW),
    ],
)
def test_every_error_answer_is_classified(status, text, kind):
    assert classify_error(status, error_body(text), {"retry-after": "3"}).kind == kind


def test_a_throttle_carries_its_retry_after_and_a_lost_poll_is_not_model_gone():
    assert classify_error(429, error_body("slow down"), {"Retry-After": "7"}).retry_after == 7
    lost = classify_error(404, error_body("nope"), None, "poll")
    assert lost.kind == ErrorKind.TRANSIENT and lost.may_have_been_billed


def test_the_key_never_leaks_into_an_error():
    fake = FakeLeonardo(created=(400, {"error": f"invalid key {KEY}"}))
    with pytest.raises(ProviderError) as caught:
        provider(fake).submit(request())
    assert KEY not in caught.value.message and KEY not in caught.value.detail


def test_the_key_is_never_sent_off_origin():
    fake = FakeLeonardo()
    with pytest.raises(ProviderError) as caught:
        provider(fake).poll(UpstreamJob(GID, {"get": "https://evil.example/steal"}))
    assert caught.value.kind == ErrorKind.CORRUPT and fake.requests == []


def test_the_key_check_reads_the_account():
    def handler(req):
        assert req.url.path == "/api/rest/v1/me"
        details = {"user": {"username": "ada"}, "apiSubscriptionTokens": 3000}
        details.update(apiPaidTokens=500, apiConcurrencySlots=10)
        return httpx.Response(200, json={"user_details": [details]})

    said = provider(handler).test_connection()
    assert "ada" in said and "3500" in said and "10" in said


def test_cancel_says_it_was_too_late_without_calling():
    fake = FakeLeonardo()
    assert provider(fake).cancel(job()) is False and fake.requests == []
