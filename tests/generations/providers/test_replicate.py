"""The Replicate provider against Replicate's documented answers, on a mocked transport."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from generations.failures import ErrorKind
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
from generations.providers.replicate import (
    FALLBACK_MODEL,
    ReplicateProvider,
    build_request,
    cancel_after,
    classify_error,
)
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

API = "https://api.replicate.com/v1"
SANDBOX = "http://127.0.0.1:8765/replicate/v1"
KEY = "r8_SECRETtoken0123456789abcdefABCDEF"
PID = "gm3qorzdhgbfurvjtvhg6dckhu"
CREATE = f"{API}/models/google/nano-banana-pro/predictions"


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "google/nano-banana-pro")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "4:3")
    kwargs.setdefault("image_size", "2K")
    return ImageRequest(**kwargs)


def prediction(status: str = "starting", base: str = API, **extra) -> dict:
    body = {
        "id": PID,
        "model": "google/nano-banana-pro",
        "version": "hidden",
        "input": {"prompt": "an axolotl reading a newspaper", "resolution": "2K"},
        "logs": "",
        "output": None,
        "data_removed": False,
        "error": None,
        "status": status,
        "created_at": "2026-11-20T10:00:00.000Z",
        "started_at": None,
        "completed_at": None,
        "metrics": {},
        "urls": {
            "cancel": f"{base}/predictions/{PID}/cancel",
            "get": f"{base}/predictions/{PID}",
            "stream": f"https://stream.replicate.com/v1/files/{PID}",
            "web": f"https://replicate.com/p/{PID}",
        },
    }
    if status in ("processing", "succeeded", "failed", "canceled"):
        body["started_at"] = "2026-11-20T10:00:01.000Z"
    if status in ("succeeded", "failed", "canceled"):
        body["completed_at"] = "2026-11-20T10:00:09.000Z"
        body["metrics"] = {"predict_time": 8.1, "total_time": 9.0}
    return {**body, **extra}


def provider(handler, *, base: str = API, key: str = KEY) -> ReplicateProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return ReplicateProvider(base, key, Timeouts(read=5.0), client=client)


def job(base: str = API) -> UpstreamJob:
    return UpstreamJob(
        PID, {"get": f"{base}/predictions/{PID}", "cancel": f"{base}/predictions/{PID}/cancel"}
    )


def submit_failing(status: int, body, headers: dict | None = None) -> ProviderError:
    fake = FakeFal({("POST", CREATE): reply(status, body, headers)})
    return failure(lambda: provider(fake).submit(request()))


def png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def test_it_is_the_registered_replicate_provider():
    assert provider_class("replicate") is ReplicateProvider


# --- the request -------------------------------------------------------------------------


def test_submit_creates_a_prediction_waiting_briefly():
    fake = FakeFal({("POST", CREATE): reply(201, prediction())})
    answer = provider(fake).submit(request())
    sent = fake.sent[0]
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["prefer"] == "wait=5"
    assert "cancel-after" not in sent.headers
    assert json.loads(sent.content) == {
        "input": {
            "prompt": "an axolotl reading a newspaper",
            "aspect_ratio": "4:3",
            "output_format": "png",
            "resolution": "2K",
        }
    }
    assert isinstance(answer, Pending) and answer.started is False
    assert answer.job == job()  # urls.get and urls.cancel as Replicate gave them


def test_references_fallback_webhook_and_deadline_are_sent():
    png = image_bytes()
    fake = FakeFal({("POST", CREATE): reply(201, prediction())})
    req = request(
        references=(Reference(png, "image/png"),), allow_fallback=True, deadline_seconds=89.2
    )
    provider(fake).submit(req, webhook_url="https://nanoweb.example/hooks/replicate")
    sent = fake.sent[0]
    body = json.loads(sent.content)
    assert body["input"]["image_input"] == [png_uri(png)]
    assert body["input"]["allow_fallback_model"] is True
    assert body["webhook"] == "https://nanoweb.example/hooks/replicate"
    assert body["webhook_events_filter"] == ["completed"]
    assert sent.headers["cancel-after"] == "90s"


def test_fallback_is_only_asked_for_when_allowed_and_sizes_only_when_given():
    _url, body = build_request(API, request(image_size=None))
    assert "allow_fallback_model" not in body["input"] and "resolution" not in body["input"]


def test_a_pinned_version_uses_the_predictions_endpoint():
    url, body = build_request(API, request(upstream_model="google/nano-banana:f0a9d34b"))
    assert url == f"{API}/predictions" and body["version"] == "google/nano-banana:f0a9d34b"


def test_cancel_after_is_whole_seconds():
    assert cancel_after(60) == "60s" and cancel_after(0.2) == "1s"


# --- Prefer: wait, finishing or not -----------------------------------------------------


def test_a_prediction_that_finished_within_the_wait_is_the_result():
    png = image_bytes()
    body = prediction("succeeded", output=f"{SANDBOX}/files/{PID}/output.png")
    body["urls"] = prediction(base=SANDBOX)["urls"]
    fake = FakeFal(
        {
            ("POST", f"{SANDBOX}/models/google/nano-banana-pro/predictions"): reply(201, body),
            ("GET", f"{SANDBOX}/files/{PID}/output.png"): httpx.Response(200, content=png),
        }
    )
    answer = provider(fake, base=SANDBOX).submit(request())
    assert isinstance(answer, ImageResult)
    assert answer.images[0].data == png
    assert answer.response_id == PID and answer.model_version == "google/nano-banana-pro"
    assert answer.extra["metrics"]["predict_time"] == 8.1


def test_files_ready_while_still_processing_count_as_done():
    png = image_bytes()
    fake = FakeFal({("POST", CREATE): reply(201, prediction("processing", output=png_uri(png)))})
    answer = provider(fake).submit(request())
    assert isinstance(answer, ImageResult) and answer.images[0].data == png


def test_a_prediction_still_running_after_the_wait_is_polled_later():
    fake = FakeFal({("POST", CREATE): reply(201, prediction("processing"))})
    answer = provider(fake).submit(request())
    assert isinstance(answer, Pending) and answer.started is True


def test_poll_gets_the_prediction_and_downloads_the_output_through_safe_fetch(monkeypatch):
    png = image_bytes()
    seen: list[str] = []

    def fake_fetch(url, *, max_bytes, timeout):
        seen.append(url)
        return png

    monkeypatch.setattr(common, "fetch_image", fake_fetch)
    out = "https://replicate.delivery/xezq/abc/tmp.png"
    fake = FakeFal({("GET", job().urls["get"]): reply(200, prediction("succeeded", output=out))})
    answer = provider(fake).poll(job())
    assert answer.images[0].data == png and seen == [out]
    assert fake.sent[0].headers["authorization"] == f"Bearer {KEY}"


def test_an_output_list_is_downloaded_too():
    png = image_bytes()
    fake = FakeFal(
        {("GET", job().urls["get"]): reply(200, prediction("succeeded", output=[png_uri(png)]))}
    )
    assert provider(fake).poll(job()).images[0].data == png


def test_succeeded_without_output_is_no_image():
    fake = FakeFal({("GET", job().urls["get"]): reply(200, prediction("succeeded", output=None))})
    err = failure(lambda: provider(fake).poll(job()))
    assert err.kind == ErrorKind.NO_IMAGE and err.may_have_been_billed


# --- the capacity fallback ---------------------------------------------------------------


@pytest.mark.parametrize("where", ["output", "input"])
def test_a_prediction_served_by_the_fallback_model_is_marked(where):
    png = image_bytes()
    body = prediction("succeeded")
    if where == "output":
        body["output"] = {"image": png_uri(png), "resolution": "fallback"}
    else:
        body["output"] = png_uri(png)
        body["input"]["resolution"] = "fallback"
    fake = FakeFal({("GET", job().urls["get"]): reply(200, body)})
    answer = provider(fake).poll(job())
    assert answer.model_version == FALLBACK_MODEL == "bytedance/seedream-5-lite"
    assert answer.extra["served_by"] == FALLBACK_MODEL
    assert answer.extra["requested_model"] == "google/nano-banana-pro"


def test_the_fallback_named_in_the_logs_is_the_serving_model():
    png = image_bytes()
    logs = (
        "Nano Banana Pro is at capacity. Falling back to bytedance/seedream-5-lite "
        "(resolution: fallback)\nGenerating image...\n"
    )
    body = prediction("succeeded", output=png_uri(png), logs=logs)
    fake = FakeFal({("GET", job().urls["get"]): reply(200, body)})
    answer = provider(fake).poll(job())
    assert answer.model_version == "bytedance/seedream-5-lite"
    assert answer.extra["served_by"] == "bytedance/seedream-5-lite"


def test_a_prediction_nano_banana_served_itself_is_not_marked():
    png = image_bytes()
    fake = FakeFal(
        {("GET", job().urls["get"]): reply(200, prediction("succeeded", output=png_uri(png)))}
    )
    answer = provider(fake).poll(job())
    assert "served_by" not in answer.extra


# --- failed, canceled, aborted ----------------------------------------------------------


def failed_with(error: str) -> ProviderError:
    fake = FakeFal({("GET", job().urls["get"]): reply(200, prediction("failed", error=error))})
    return failure(lambda: provider(fake).poll(job()))


def test_a_prediction_flagged_as_sensitive_is_blocked():
    err = failed_with(
        "The input or output was flagged as sensitive. Please try again with different "
        "inputs. (E005)"
    )
    assert err.kind == ErrorKind.BLOCKED and "E005" in err.detail


@pytest.mark.parametrize(
    "error",
    [
        "An unexpected error occurred (E1000)",
        "Timeout starting prediction (E6716)",
        "Google API error: 429 RESOURCE_EXHAUSTED",
        "something nobody documented",
    ],
)
def test_internal_and_capacity_failures_are_transient(error):
    assert failed_with(error).kind == ErrorKind.TRANSIENT


@pytest.mark.parametrize("error", ["Invalid aspect_ratio: 7:3", "Model ran out of memory (E1001)"])
def test_invalid_input_failures_are_permanent(error):
    assert failed_with(error).kind == ErrorKind.PERMANENT


def test_canceled_after_starting_may_have_been_billed_but_aborted_was_not():
    canceled = FakeFal({("GET", job().urls["get"]): reply(200, prediction("canceled"))})
    err = failure(lambda: provider(canceled).poll(job()))
    assert err.kind == ErrorKind.TRANSIENT and err.may_have_been_billed
    aborted = FakeFal({("GET", job().urls["get"]): reply(200, prediction("aborted"))})
    err = failure(lambda: provider(aborted).poll(job()))
    assert err.kind == ErrorKind.TRANSIENT and not err.may_have_been_billed


def test_an_unknown_status_is_corrupt():
    fake = FakeFal({("GET", job().urls["get"]): reply(200, prediction("sleeping"))})
    assert failure(lambda: provider(fake).poll(job())).kind == ErrorKind.CORRUPT


# --- cancel ---------------------------------------------------------------------------


def test_cancel_posts_and_is_true_only_when_it_never_started():
    cancel = job().urls["cancel"]
    early = FakeFal(
        {("POST", cancel): reply(200, prediction("canceled", started_at=None, metrics={}))}
    )
    assert provider(early).cancel(job()) is True
    assert early.sent[0].method == "POST"
    aborted = FakeFal({("POST", cancel): reply(200, prediction("aborted"))})
    assert provider(aborted).cancel(job()) is True
    late = FakeFal({("POST", cancel): reply(200, prediction("canceled"))})
    assert provider(late).cancel(job()) is False
    done = FakeFal({("POST", cancel): reply(200, prediction("succeeded", output="x"))})
    assert provider(done).cancel(job()) is False


# --- HTTP errors ------------------------------------------------------------------------


def problem(status: int, title: str, detail: str) -> dict:
    return {"title": title, "detail": detail, "status": status}


def test_a_bad_token_is_key_invalid():
    err = submit_failing(401, problem(401, "Unauthenticated", "You did not pass a valid token"))
    assert err.kind == ErrorKind.KEY_INVALID


def test_no_credit_is_out_of_credit():
    detail = (
        "You have insufficient credit to run this model. Go to "
        "https://replicate.com/account/billing#billing to purchase credit."
    )
    err = submit_failing(402, problem(402, "Insufficient credit", detail))
    assert err.kind == ErrorKind.OUT_OF_CREDIT


def test_invalid_input_is_permanent():
    err = submit_failing(
        422, problem(422, "Input validation failed", "input.aspect_ratio must be one of …")
    )
    assert err.kind == ErrorKind.PERMANENT


@pytest.mark.parametrize(
    ("body", "headers", "delay"),
    [
        ({"detail": "Request was throttled. Your rate limit resets in ~30s."}, None, 30.0),
        ({"detail": "Request was throttled. Expected available in 12 seconds."}, None, 12.0),
        ({"detail": "Request was throttled."}, {"retry-after": "4"}, 4.0),
        (
            {
                "detail": "Request was throttled. Your rate limit for creating predictions is "
                "reduced to 6 requests per minute with a burst of 1 requests while you have "
                "less than $5.0 in credit. Your rate limit resets in ~10s."
            },
            None,
            10.0,
        ),
    ],
)
def test_a_throttle_is_rate_limited_with_its_delay(body, headers, delay):
    err = submit_failing(429, body, headers)
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after == delay


def test_server_errors_are_transient():
    assert submit_failing(500, problem(500, "Internal", "oops")).kind == ErrorKind.TRANSIENT
    assert submit_failing(503, "<html>down</html>").kind == ErrorKind.TRANSIENT


def test_an_unknown_model_is_model_gone_but_an_unknown_prediction_is_not():
    err = submit_failing(
        404, problem(404, "Not found", "The requested resource could not be found.")
    )
    assert err.kind == ErrorKind.MODEL_GONE
    lost = classify_error(404, b'{"detail": "Not found."}', {}, "poll")
    assert lost.kind == ErrorKind.TRANSIENT


def test_the_token_never_leaks_into_an_error():
    err = submit_failing(401, {"detail": f"bad token {KEY}"})
    assert KEY not in err.detail and KEY not in err.message


def test_the_token_is_never_sent_off_origin():
    fake = FakeFal({})
    foreign = UpstreamJob(PID, {"get": "https://api.replicate.com.evil.example/v1/p"})
    assert failure(lambda: provider(fake).poll(foreign)).kind == ErrorKind.CORRUPT
    assert fake.sent == []


# --- the key check ------------------------------------------------------------------------


def test_list_models_checks_the_key_and_says_it_cannot_list():
    account = {"type": "user", "username": "alice", "name": "Alice"}
    ok = FakeFal({("GET", f"{API}/account"): reply(200, account)})
    err = failure(lambda: provider(ok).list_models())
    assert err.kind == ErrorKind.PERMANENT and "alice" in err.message and "works" in err.message
    bad = FakeFal({("GET", f"{API}/account"): reply(401, {"detail": "Invalid token."})})
    assert failure(lambda: provider(bad).list_models()).kind == ErrorKind.KEY_INVALID
    missing = FakeFal({("GET", f"{API}/account"): reply(404, {"detail": "Not found."})})
    assert failure(lambda: provider(missing).list_models()).kind == ErrorKind.PERMANENT
