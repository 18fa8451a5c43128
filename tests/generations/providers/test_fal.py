"""The fal queue provider against fal's documented answers, served by a mocked transport."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers import base as base_module
from generations.providers import common
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
from generations.providers.fal import FalProvider, build_input, classify_error
from tests.generations.providers.test_openai_images import image_bytes

FAL = "https://queue.fal.run"
SANDBOX = "http://127.0.0.1:8765/fal"
KEY = "fal-key-id:SECRET-fal-secret-0123456789"
REQUEST_ID = "024ca5b1-45d3-4afd-883e-ad3abe2a1c4d"


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "fal-ai/nano-banana-pro")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "2K")
    return ImageRequest(**kwargs)


def queue_urls(base: str = FAL, app: str = "fal-ai/nano-banana-pro") -> dict:
    """What fal's submit answers: the URLs name the app only, never the /edit subpath."""
    root = f"{base}/{app}/requests/{REQUEST_ID}"
    return {"status_url": f"{root}/status", "response_url": root, "cancel_url": f"{root}/cancel"}


def submitted(base: str = FAL, **extra) -> dict:
    return {
        "request_id": REQUEST_ID,
        "gateway_request_id": REQUEST_ID,
        "status": "IN_QUEUE",
        "queue_position": 2,
        **queue_urls(base),
        **extra,
    }


class FakeFal:
    """Answers by (method, URL without query); records every request it was sent."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.sent: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.sent.append(req)
        url = str(req.url.copy_with(query=None))
        answer = self.routes.get((req.method, url))
        if answer is None:
            return httpx.Response(599, json={"detail": f"unexpected {req.method} {url}"})
        if callable(answer):
            answer = answer(req)
        if isinstance(answer, list):  # successive answers
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        return answer


def provider(handler, *, base: str = FAL, key: str = KEY) -> FalProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return FalProvider(base, key, Timeouts(read=5.0), client=client)


def reply(status: int, body, headers: dict | None = None) -> httpx.Response:
    if isinstance(body, dict | list):
        return httpx.Response(status, json=body, headers=headers)
    return httpx.Response(status, content=body, headers=headers)


def job(base: str = FAL) -> UpstreamJob:
    urls = queue_urls(base)
    return UpstreamJob(
        REQUEST_ID,
        {
            "status": urls["status_url"],
            "response": urls["response_url"],
            "cancel": urls["cancel_url"],
        },
    )


def failure(call) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        call()
    return info.value


def submit_failing(status: int, body, headers: dict | None = None) -> ProviderError:
    fake = FakeFal({("POST", f"{FAL}/fal-ai/nano-banana-pro"): reply(status, body, headers)})
    return failure(lambda: provider(fake).submit(request()))


def test_it_is_the_registered_fal_provider():
    assert provider_class("fal") is FalProvider
    assert FalProvider.queued


# --- submit ----------------------------------------------------------------------------


def test_submit_posts_the_input_with_the_key_and_keeps_the_urls_fal_returned():
    fake = FakeFal({("POST", f"{FAL}/fal-ai/nano-banana-pro"): reply(200, submitted())})
    answer = provider(fake).submit(request())
    sent = fake.sent[0]
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Key {KEY}"
    assert json.loads(sent.content) == {
        "prompt": "an axolotl reading a newspaper",
        "num_images": 1,
        "aspect_ratio": "16:9",
        "resolution": "2K",
        "output_format": "png",
    }
    assert "fal_webhook" not in sent.url.params
    assert isinstance(answer, Pending)
    assert answer.started is False and answer.position == 2
    assert answer.job == UpstreamJob(
        REQUEST_ID,
        {
            "status": f"{FAL}/fal-ai/nano-banana-pro/requests/{REQUEST_ID}/status",
            "response": f"{FAL}/fal-ai/nano-banana-pro/requests/{REQUEST_ID}",
            "cancel": f"{FAL}/fal-ai/nano-banana-pro/requests/{REQUEST_ID}/cancel",
        },
    )


def test_references_go_to_the_edit_endpoint_as_data_uris_and_the_urls_drop_the_subpath():
    png = image_bytes()
    fake = FakeFal({("POST", f"{FAL}/fal-ai/nano-banana-pro/edit"): reply(200, submitted())})
    refs = (Reference(png, "image/png"), Reference(image_bytes("JPEG"), "image/jpeg"))
    answer = provider(fake).submit(request(references=refs))
    body = json.loads(fake.sent[0].content)
    assert body["image_urls"] == [
        "data:image/png;base64," + base64.b64encode(png).decode(),
        "data:image/jpeg;base64," + base64.b64encode(refs[1].data).decode(),
    ]
    # Used exactly as returned: the status URL has no /edit in it.
    assert answer.job.urls["status"] == queue_urls()["status_url"]
    assert "/edit" not in answer.job.urls["response"]


def test_a_webhook_url_is_passed_as_fal_webhook():
    fake = FakeFal({("POST", f"{FAL}/fal-ai/nano-banana-pro"): reply(200, submitted())})
    provider(fake).submit(request(), webhook_url="https://nanoweb.example/hooks/fal?t=1")
    assert fake.sent[0].url.params["fal_webhook"] == "https://nanoweb.example/hooks/fal?t=1"


@pytest.mark.parametrize(
    ("size", "sent"), [("512", "0.5K"), ("1K", "1K"), ("2K", "2K"), ("4K", "4K"), (None, None)]
)
def test_sizes_are_sent_the_way_fal_spells_them(size, sent):
    body = build_input(request(image_size=size))
    assert body.get("resolution") == sent
    assert ("resolution" in body) is (size is not None)


def test_a_submit_answer_without_its_urls_is_corrupt_and_may_have_been_billed():
    body = {"request_id": REQUEST_ID, "status": "IN_QUEUE"}
    err = submit_failing(200, body)
    assert err.kind == ErrorKind.CORRUPT and err.may_have_been_billed


def test_the_key_is_never_sent_to_a_url_off_the_configured_origin():
    fake = FakeFal({})
    foreign = UpstreamJob(REQUEST_ID, {"status": "https://evil.example/steal", "response": "x"})
    err = failure(lambda: provider(fake).poll(foreign))
    assert err.kind == ErrorKind.CORRUPT
    assert fake.sent == []


# --- every documented error answer -------------------------------------------------------

CONTENT_POLICY = {
    "detail": [
        {
            "loc": ["body", "prompt"],
            "msg": "The content was flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation",
            "input": "…",
        }
    ]
}
TOO_LARGE = {
    "detail": [
        {
            "loc": ["body", "image_urls", 0],
            "msg": "Image dimensions are too large.",
            "type": "image_too_large",
            "ctx": {"max_width": 4096, "max_height": 4096},
        }
    ]
}


def test_a_content_policy_violation_is_blocked():
    err = submit_failing(422, CONTENT_POLICY, {"x-fal-retryable": "false"})
    assert err.kind == ErrorKind.BLOCKED and not err.retryable


def test_other_model_errors_are_permanent():
    err = submit_failing(422, TOO_LARGE, {"x-fal-retryable": "false"})
    assert err.kind == ErrorKind.PERMANENT and "too large" in err.message
    assert "image_too_large" in err.detail


@pytest.mark.parametrize(
    "detail",
    [
        "User is locked. Reason: Exhausted balance. Top up your balance at "
        "fal.ai/dashboard/billing.",
        "User is locked. Reason: TOP_UP.",
    ],
)
def test_a_locked_account_without_balance_is_out_of_credit_not_a_bad_key(detail):
    err = submit_failing(403, {"detail": detail})
    assert err.kind == ErrorKind.OUT_OF_CREDIT


def test_an_admin_lock_and_a_bad_key_are_key_invalid():
    admin = submit_failing(403, {"detail": "User is locked. Reason: Admin lock. Contact support"})
    assert admin.kind == ErrorKind.KEY_INVALID and "locked" in admin.message
    assert submit_failing(401, {"detail": "Unauthorized"}).kind == ErrorKind.KEY_INVALID
    assert submit_failing(403, {"detail": "Forbidden"}).kind == ErrorKind.KEY_INVALID


def test_a_rate_limit_carries_the_delay():
    err = submit_failing(429, {"detail": "Too many requests"}, {"retry-after": "7"})
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after == 7.0


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (503, "runner_scheduling_failure"),
        (504, "request_timeout"),
        (500, "internal_error"),
        (502, "runner_incomplete_response"),
    ],
)
def test_server_errors_are_transient_and_not_billed(status, error_type):
    body = {"detail": "Runner failed", "error_type": error_type}
    err = submit_failing(status, body, {"x-fal-error-type": error_type})
    assert err.kind == ErrorKind.TRANSIENT
    assert not err.may_have_been_billed
    assert error_type in err.detail


def test_the_retryable_header_makes_a_client_error_transient():
    err = submit_failing(400, {"detail": "try again"}, {"x-fal-retryable": "true"})
    assert err.kind == ErrorKind.TRANSIENT


def test_no_media_generated_is_no_image():
    body = {
        "detail": [
            {
                "loc": ["body"],
                "msg": "The model did not generate the expected output for this prompt.",
                "type": "no_media_generated",
            }
        ]
    }
    err = submit_failing(422, body, {"x-fal-retryable": "false"})
    assert err.kind == ErrorKind.NO_IMAGE


def test_a_downstream_location_refusal_is_refused_other_downstream_errors_permanent():
    where = {"detail": "Downstream service error: User location is not supported for the API."}
    assert submit_failing(400, where).kind == ErrorKind.REFUSED
    other = {"detail": [{"loc": ["body"], "msg": "Downstream", "type": "downstream_service_error"}]}
    assert submit_failing(400, other).kind == ErrorKind.PERMANENT


def test_an_unknown_endpoint_is_model_gone():
    err = submit_failing(404, {"detail": "Application 'nano-banana-9' not found"})
    assert err.kind == ErrorKind.MODEL_GONE


def test_a_key_echoed_in_an_error_is_scrubbed():
    err = submit_failing(401, {"detail": f"Invalid key {KEY}"})
    assert KEY not in err.detail and KEY not in err.message and "[key]" in err.detail


@pytest.mark.parametrize(
    ("exc", "kind", "billed"),
    [
        (httpx.ConnectError, ErrorKind.TRANSIENT, False),
        (httpx.ReadTimeout, ErrorKind.SLOW, True),
        (httpx.RemoteProtocolError, ErrorKind.TRANSIENT, True),
    ],
)
def test_a_submit_whose_answer_was_lost_may_have_been_billed(exc, kind, billed):
    def handler(req):
        raise exc("boom", request=req)

    err = failure(lambda: provider(handler).submit(request()))
    assert err.kind == kind and err.may_have_been_billed is billed


# --- poll -----------------------------------------------------------------------------


def test_a_queued_request_is_pending_with_its_place():
    urls = queue_urls()
    fake = FakeFal(
        {("GET", urls["status_url"]): reply(202, {"status": "IN_QUEUE", "queue_position": 3})}
    )
    answer = provider(fake).poll(job())
    assert answer == Pending(job(), started=False, position=3)
    assert fake.sent[0].headers["authorization"] == f"Key {KEY}"


def test_a_request_in_progress_is_pending_and_started():
    urls = queue_urls()
    fake = FakeFal({("GET", urls["status_url"]): reply(202, {"status": "IN_PROGRESS", "logs": []})})
    answer = provider(fake).poll(job())
    assert isinstance(answer, Pending) and answer.started and answer.position is None


def completed(base: str = FAL, result=None, status_body=None) -> FakeFal:
    urls = queue_urls(base)
    status = status_body or {"status": "COMPLETED", "logs": [], "metrics": {"inference_time": 3}}
    return FakeFal(
        {
            ("GET", urls["status_url"]): reply(200, status),
            ("GET", urls["response_url"]): result,
        }
    )


def test_a_completed_request_is_fetched_and_its_images_downloaded_from_the_origin():
    png = image_bytes(size=(40, 30))
    result = reply(
        200,
        {
            "images": [
                {
                    "url": f"{SANDBOX}/files/1.png",
                    "content_type": "image/png",
                    "width": 40,
                    "height": 30,
                }
            ],
            "description": "An axolotl with a newspaper.",
            "seed": 42,
        },
    )
    fake = completed(SANDBOX, result)
    fake.routes[("GET", f"{SANDBOX}/files/1.png")] = httpx.Response(200, content=png)
    answer = provider(fake, base=SANDBOX).poll(job(SANDBOX))
    assert isinstance(answer, ImageResult)
    assert answer.images[0].data == png and answer.images[0].mime_type == "image/png"
    assert answer.extra["seed"] == 42 and answer.text == "An axolotl with a newspaper."
    assert answer.response_id == REQUEST_ID
    assert answer.usage.total_tokens == 0
    assert [str(r.url) for r in fake.sent][-1] == f"{SANDBOX}/files/1.png"


def test_an_inline_data_uri_image_needs_no_download():
    png = image_bytes()
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    answer = provider(completed(result=reply(200, {"images": [{"url": uri}]}))).poll(job())
    assert answer.images[0].data == png


def test_a_cdn_url_goes_through_safe_fetch_without_the_key(monkeypatch):
    png = image_bytes()
    fetched: list[str] = []

    def fake_fetch(url, *, max_bytes, timeout):
        fetched.append(url)
        return png

    monkeypatch.setattr(common, "fetch_image", fake_fetch)
    result = reply(200, {"images": [{"url": "https://v3.fal.media/files/x/1.png"}]})
    fake = completed(result=result)
    answer = provider(fake).poll(job())
    assert answer.images[0].data == png
    assert fetched == ["https://v3.fal.media/files/x/1.png"]
    assert all("fal.media" not in str(r.url) for r in fake.sent)


def test_an_image_url_into_a_private_network_is_refused():
    result = reply(200, {"images": [{"url": "http://10.0.0.7/internal.png"}]})
    err = failure(lambda: provider(completed(result=result)).poll(job()))
    assert err.kind == ErrorKind.CORRUPT and err.may_have_been_billed


def test_a_damaged_image_is_corrupt_and_no_image_is_no_image():
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nnope").decode()
    err = failure(
        lambda: provider(completed(result=reply(200, {"images": [{"url": uri}]}))).poll(job())
    )
    assert err.kind == ErrorKind.CORRUPT
    empty = failure(lambda: provider(completed(result=reply(200, {"images": []}))).poll(job()))
    assert empty.kind == ErrorKind.NO_IMAGE and empty.may_have_been_billed


def test_a_completed_request_with_an_error_is_a_failure():
    status = {
        "status": "COMPLETED",
        "error": "No runner",
        "error_type": "runner_scheduling_failure",
    }
    result = reply(503, {"detail": "No runner", "error_type": "runner_scheduling_failure"})
    err = failure(lambda: provider(completed(result=result, status_body=status)).poll(job()))
    assert err.kind == ErrorKind.TRANSIENT


def test_a_completed_error_with_a_2xx_result_is_still_a_failure():
    status = {"status": "COMPLETED", "error": "flagged", "error_type": "content_policy_violation"}
    err = failure(
        lambda: provider(completed(result=reply(200, {"images": []}), status_body=status)).poll(
            job()
        )
    )
    assert err.kind == ErrorKind.BLOCKED


def test_a_result_refused_by_the_content_checker_is_blocked():
    status = {"status": "COMPLETED", "error": "Invalid status code: 422", "error_type": None}
    err = failure(
        lambda: provider(completed(result=reply(422, CONTENT_POLICY), status_body=status)).poll(
            job()
        )
    )
    assert err.kind == ErrorKind.BLOCKED


def test_a_request_fal_no_longer_knows_is_transient_not_model_gone():
    fake = FakeFal(
        {("GET", queue_urls()["status_url"]): reply(404, {"detail": "Request not found"})}
    )
    err = failure(lambda: provider(fake).poll(job()))
    assert err.kind == ErrorKind.TRANSIENT


def test_a_cancelled_status_is_transient_and_not_billed():
    fake = FakeFal({("GET", queue_urls()["status_url"]): reply(200, {"status": "CANCELLED"})})
    err = failure(lambda: provider(fake).poll(job()))
    assert err.kind == ErrorKind.TRANSIENT and not err.may_have_been_billed


def test_a_failed_status_is_classified_by_its_result():
    fake = completed(
        result=reply(422, CONTENT_POLICY), status_body={"status": "FAILED", "error": "x"}
    )
    assert failure(lambda: provider(fake).poll(job())).kind == ErrorKind.BLOCKED


def test_a_poll_that_cannot_connect_bills_nothing():
    def handler(req):
        raise httpx.ReadTimeout("slow", request=req)

    err = failure(lambda: provider(handler).poll(job()))
    assert not err.may_have_been_billed


# --- cancel ---------------------------------------------------------------------------


def cancelling(state: str | None, answer: httpx.Response) -> FakeFal:
    urls = queue_urls()
    routes = {("PUT", urls["cancel_url"]): answer}
    if state:
        code = 200 if state == "COMPLETED" else 202
        routes[("GET", urls["status_url"])] = reply(code, {"status": state})
    return FakeFal(routes)


def test_cancel_of_a_queued_request_puts_to_the_cancel_url_and_is_in_time():
    fake = cancelling("IN_QUEUE", reply(202, {"status": "CANCELLATION_REQUESTED"}))
    assert provider(fake).cancel(job()) is True
    put = [r for r in fake.sent if r.method == "PUT"]
    assert [str(r.url) for r in put] == [queue_urls()["cancel_url"]]
    assert put[0].headers["authorization"] == f"Key {KEY}"


def test_cancel_of_a_request_in_progress_is_sent_but_too_late_to_be_free():
    fake = cancelling("IN_PROGRESS", reply(202, {"status": "CANCELLATION_REQUESTED"}))
    assert provider(fake).cancel(job()) is False
    assert [r.method for r in fake.sent] == ["GET", "PUT"]


def test_cancel_after_completion_or_of_an_unknown_request_is_false():
    late = cancelling("COMPLETED", reply(400, {"status": "ALREADY_COMPLETED"}))
    assert provider(late).cancel(job()) is False
    gone = cancelling(None, reply(404, {"status": "NOT_FOUND"}))
    assert provider(gone).cancel(job()) is False


def test_cancel_falls_back_on_fals_answer_when_the_status_cannot_be_read():
    fake = cancelling(None, reply(202, {"status": "CANCELLATION_REQUESTED"}))
    assert provider(fake).cancel(job()) is True


def test_a_cancel_the_provider_refuses_raises():
    fake = FakeFal({("PUT", queue_urls()["cancel_url"]): reply(401, {"detail": "Unauthorized"})})
    assert failure(lambda: provider(fake).cancel(job())).kind == ErrorKind.KEY_INVALID


# --- the whole round trip --------------------------------------------------------------


def test_generate_submits_polls_and_downloads(monkeypatch):
    monkeypatch.setattr(base_module.time, "sleep", lambda s: None)
    png = image_bytes()
    urls = queue_urls()
    fake = FakeFal(
        {
            ("POST", f"{FAL}/fal-ai/nano-banana-pro"): reply(200, submitted()),
            ("GET", urls["status_url"]): [
                reply(202, {"status": "IN_PROGRESS"}),
                reply(200, {"status": "COMPLETED"}),
            ],
            ("GET", urls["response_url"]): reply(
                200,
                {"images": [{"url": "data:image/png;base64," + base64.b64encode(png).decode()}]},
            ),
        }
    )
    result = provider(fake).generate(request())
    assert result.images[0].data == png
    assert [r.method for r in fake.sent] == ["POST", "GET", "GET", "GET"]


def test_classify_error_reads_the_error_type_header_alone():
    err = classify_error(503, b"<html>busy</html>", {"X-Fal-Error-Type": "runner_disconnected"})
    assert err.kind == ErrorKind.TRANSIENT and "runner_disconnected" in err.detail
