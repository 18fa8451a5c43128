"""The sandbox speaking Replicate's predictions API under /replicate/v1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import pytest

from generations.sandbox.replicate import parse_duration, parse_wait
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import (
    FAST,
    REPLICATE_KEY,
    Receiver,
    picture,
    png_data_uri,
    queue_counters,
    wait_until,
)
from tests.generations.sandbox.client import http

PREDICTION_KEYS = {
    "id",
    "model",
    "version",
    "input",
    "logs",
    "output",
    "data_removed",
    "error",
    "status",
    "created_at",
    "urls",
    "source",
    "started_at",
}
TERMINAL = {"succeeded", "failed", "canceled", "aborted"}


def create(
    url: str,
    model: str = "nano-banana-pro",
    *,
    key: str | None = REPLICATE_KEY,
    headers: dict | None = None,
    body: dict | None = None,
    timeout: float = 10,
    **inputs,
) -> httpx.Response:
    inputs.setdefault("prompt", "a lighthouse at dusk")
    sent = {"input": inputs} if body is None else body
    all_headers = {"Authorization": f"Bearer {key}"} if key else {}
    all_headers.update(headers or {})
    return http.post(
        f"{url}/replicate/v1/models/google/{model}/predictions",
        json=sent,
        headers=all_headers,
        timeout=timeout,
    )


def get(prediction_url: str, key: str = REPLICATE_KEY) -> httpx.Response:
    return http.get(prediction_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def finished(prediction: dict) -> dict:
    def terminal():
        body = get(prediction["urls"]["get"]).json()
        return body if body["status"] in TERMINAL else None

    return wait_until(terminal)


def problem_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.fixture
def fast_url():
    with running_sandbox(SandboxConfig(queue_latency=FAST)) as url:
        yield url


# --- the prediction ----------------------------------------------------------------------


def test_it_creates_a_prediction_in_replicates_shape():
    with running_sandbox(SandboxConfig(queue_latency=(0.5, 0.5))) as url:
        response = create(url, resolution="1K", aspect_ratio="16:9")
        assert response.status_code == 201
        prediction = response.json()
        assert set(prediction) == PREDICTION_KEYS
        assert prediction["status"] == "processing"  # it started at once: nothing queued
        assert (prediction["model"], prediction["output"]) == ("google/nano-banana-pro", None)
        assert prediction["input"] == {
            "prompt": "a lighthouse at dusk",
            "resolution": "1K",
            "aspect_ratio": "16:9",
        }
        base = f"{url}/replicate/v1/predictions/{prediction['id']}"
        assert prediction["urls"] == {
            "cancel": f"{base}/cancel",
            "get": base,
            "web": f"https://replicate.com/p/{prediction['id']}",
        }
        done = finished(prediction)
    assert done["status"] == "succeeded" and done["error"] is None
    assert done["metrics"]["predict_time"] == pytest.approx(0.5)
    assert done["metrics"]["total_time"] >= done["metrics"]["predict_time"]
    assert done["started_at"] <= done["completed_at"]
    assert isinstance(done["output"], str)


def test_the_output_is_a_url_to_the_image(fast_url):
    done = finished(create(fast_url, aspect_ratio="3:2", output_format="png").json())
    served = http.get(done["output"])
    assert served.headers["content-type"] == "image/png"
    assert picture(served.content).size == (2528, 1696)  # 2K, the pro default


def test_a_queued_prediction_is_starting():
    config = SandboxConfig(queue_latency=(1.0, 1.0), queue_concurrency=1)
    with running_sandbox(config) as url:
        create(url)
        waiting = create(url).json()
        assert waiting["status"] == "starting" and "started_at" not in waiting


def test_match_input_image_follows_the_first_reference(fast_url):
    done = finished(create(fast_url, "nano-banana-2", image_input=[png_data_uri((90, 160))]).json())
    assert picture(http.get(done["output"]).content).size == (768, 1376)  # 9:16 at 1K


# --- Prefer: wait, Cancel-After, cancel ------------------------------------------------------


def test_prefer_wait_answers_a_finished_prediction(fast_url):
    response = create(fast_url, headers={"Prefer": "wait"})
    assert response.status_code == 201
    assert response.json()["status"] == "succeeded" and response.json()["output"]


def test_prefer_wait_gives_up_after_its_seconds():
    with running_sandbox(SandboxConfig(queue_latency=(4.0, 4.0))) as url:
        started = time.monotonic()
        response = create(url, headers={"Prefer": "wait=1"})
        waited = time.monotonic() - started
    assert 0.9 <= waited < 3.5
    assert response.json()["status"] == "processing"


def test_cancel_after_aborts_a_prediction_that_never_started():
    config = SandboxConfig(queue_latency=(2.0, 2.0), queue_concurrency=1)
    with running_sandbox(config) as url:
        create(url)
        waiting = create(url, headers={"Cancel-After": "300ms"}).json()
        assert "deadline" in waiting
        done = finished(waiting)
    assert done["status"] == "aborted"
    assert "started_at" not in done and "predict_time" not in done["metrics"]


def test_cancel_after_cancels_a_running_prediction():
    with running_sandbox(SandboxConfig(queue_latency=(2.0, 2.0))) as url:
        done = finished(create(url, headers={"Cancel-After": "0.3"}).json())
    assert done["status"] == "canceled" and done["output"] is None
    assert done["started_at"] and done["metrics"]["predict_time"] == pytest.approx(0.3, abs=0.05)


def test_a_cancel_stops_the_prediction():
    with running_sandbox(SandboxConfig(queue_latency=(2.0, 2.0))) as url:
        prediction = create(url).json()
        response = http.post(
            prediction["urls"]["cancel"], headers={"Authorization": f"Bearer {REPLICATE_KEY}"}
        )
        assert response.status_code == 200 and response.json()["status"] == "canceled"
        assert get(prediction["urls"]["get"]).json()["status"] == "canceled"
        assert queue_counters(url)["cancelled"] == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("45", 45), ("1.5", 1.5)],
)
def test_it_reads_cancel_after_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "m5"])
def test_it_refuses_a_cancel_after_it_cannot_read(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_it_reads_prefer_wait():
    assert (parse_wait("wait"), parse_wait("wait=5"), parse_wait("wait=600")) == (60, 5, 60)
    assert parse_wait("respond-async") is None


# --- errors ------------------------------------------------------------------------------


def test_it_refuses_missing_and_invalid_tokens():
    with running_sandbox(SandboxConfig(invalid_keys=frozenset({"r8_bad"}))) as url:
        problem_of(create(url, key=None), 401)
        body = problem_of(create(url, key="r8_bad"), 401)
    assert (body["title"], body["detail"]) == (
        "Unauthenticated",
        "You did not pass a valid authentication token",
    )


def test_it_answers_invalid_input_with_a_422(fast_url):
    body = problem_of(create(fast_url, aspect_ratio="7:3"), 422)
    assert body["detail"].startswith("- input.aspect_ratio: aspect_ratio must be one of")
    assert body["invalid_fields"][0]["field"] == "input.aspect_ratio"
    problem_of(create(fast_url, body={"input": {}}), 422)
    problem_of(create(fast_url, "nano-banana", resolution="2K", output_format="gif"), 422)
    problem_of(create(fast_url, image_input=["data:image/png;base64,bm90IGFuIGltYWdl"]), 422)
    bad_filter = {"input": {"prompt": "x"}, "webhook": "http://x", "webhook_events_filter": ["x"]}
    problem_of(create(fast_url, body=bad_filter), 422)
    problem_of(create(fast_url, headers={"Cancel-After": "soon"}), 422)
    assert queue_counters(fast_url)["submitted"] == 0


def test_an_unknown_model_or_prediction_is_not_found(fast_url):
    problem_of(create(fast_url, "imagen-4"), 404)
    problem_of(get(f"{fast_url}/replicate/v1/predictions/doesnotexist"), 404)


SUBMIT_FAULTS = {"credit": 402, "429": 429, "daily": 429, "503": 503, "500": 500}


@pytest.mark.parametrize("trigger", SUBMIT_FAULTS)
def test_it_refuses_a_create_with_replicates_problem(fast_url, trigger):
    body = problem_of(create(fast_url, prompt=f"a cat [sandbox:{trigger}]"), SUBMIT_FAULTS[trigger])
    if trigger == "credit":
        assert body["title"] == "Insufficient credit"
        assert body["detail"].startswith("You have insufficient credit to run this model.")


def test_a_throttled_create_says_when_to_come_back(fast_url):
    response = create(fast_url, prompt="a cat [sandbox:429]")
    body = problem_of(response, 429)
    seconds = int(response.headers["retry-after"])
    assert body["detail"] == f"Request was throttled. Your rate limit resets in ~{seconds}s."


def test_a_broke_key_gets_402():
    with running_sandbox(SandboxConfig(broke_keys=frozenset({REPLICATE_KEY}))) as url:
        problem_of(create(url), 402)


FAILURES = {
    "blocked": "The input or output was flagged as sensitive (E005)",
    "image_safety": "The input or output was flagged as sensitive (E005)",
    "504": "(E1000)",
    "region": "User location is not supported",
    "no_image": "did not return an image",
    "capacity": "Resource has been exhausted",
}


@pytest.mark.parametrize("trigger", FAILURES)
def test_it_fails_a_faulty_prediction_as_replicate_does(fast_url, trigger):
    done = finished(create(fast_url, prompt=f"a cat [sandbox:{trigger}]").json())
    assert done["status"] == "failed" and done["output"] is None
    assert FAILURES[trigger] in done["error"]


def test_at_capacity_it_falls_back_when_allowed(fast_url):
    done = finished(
        create(fast_url, prompt="a cat [sandbox:capacity]", allow_fallback_model=True).json()
    )
    assert done["status"] == "succeeded" and done["output"]
    assert done["model"] == "google/nano-banana-pro"
    assert "Falling back to bytedance/seedream-5-lite" in done["logs"]


@pytest.mark.parametrize("inputs", [{"resolution": "4K"}, {"aspect_ratio": "4:5"}])
def test_the_fallback_does_not_take_4k_nor_4_5(fast_url, inputs):
    prompt = "a cat [sandbox:capacity]"
    done = finished(create(fast_url, prompt=prompt, allow_fallback_model=True, **inputs).json())
    assert done["status"] == "failed" and "Resource has been exhausted" in done["error"]


def test_a_malformed_prediction_is_unreadable_once_done(fast_url):
    prediction = create(fast_url, prompt="a cat [sandbox:malformed]").json()

    def unreadable():
        try:
            get(prediction["urls"]["get"]).json()
        except json.JSONDecodeError:
            return True
        return False

    wait_until(unreadable)


def test_a_truncated_output_is_cut_short(fast_url):
    done = finished(create(fast_url, prompt="a cat [sandbox:truncated]").json())
    with pytest.raises(OSError):
        picture(http.get(done["output"]).content)


def test_outputs_are_removed_after_the_file_ttl():
    with running_sandbox(SandboxConfig(queue_latency=FAST, file_ttl=0.5)) as url:
        done = finished(create(url).json())
        assert http.get(done["output"]).status_code == 200
        removed = wait_until(lambda: (b := get(done["urls"]["get"]).json())["data_removed"] and b)
        assert (removed["output"], removed["input"]) == (None, {})
        assert http.get(done["output"]).status_code == 404


# --- webhooks ----------------------------------------------------------------------------


def verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks: HMAC-SHA256 of "{id}.{timestamp}.{body}" keyed with the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    assert any(hmac.compare_digest(expected, s) for s in signatures)


def secret_of(url: str) -> str:
    response = get(f"{url}/replicate/v1/webhooks/default/secret")
    key = response.json()["key"]
    assert key.startswith("whsec_")
    return key


def test_it_sends_output_and_completed_webhooks_by_default(fast_url):
    secret = secret_of(fast_url)
    with Receiver() as receiver:
        prediction = create(fast_url, webhook=None, body=None).json()  # no webhook: nothing
        created = create(
            fast_url, body={"input": {"prompt": "a fox"}, "webhook": receiver.url}
        ).json()
        deliveries = receiver.wait_for(2)
    assert prediction["id"] != created["id"]
    bodies = [json.loads(body) for _, body in deliveries]
    assert [b["status"] for b in bodies] == ["processing", "succeeded"]
    assert all(b["id"] == created["id"] and b["output"] for b in bodies)
    for headers, body in deliveries:
        verify(secret, headers, body)
        assert headers["webhook-id"].startswith("msg_")
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    wait_until(lambda: queue_counters(fast_url)["webhooks_sent"] == 2)


def test_it_honours_the_events_filter(fast_url):
    with Receiver() as receiver:
        body = {
            "input": {"prompt": "a fox"},
            "webhook": receiver.url,
            "webhook_events_filter": ["start", "completed"],
        }
        create(fast_url, body=body)
        deliveries = receiver.wait_for(2)
    assert [json.loads(b)["status"] for _, b in deliveries] == ["processing", "succeeded"]
    assert json.loads(deliveries[0][1])["output"] is None


def test_a_canceled_prediction_sends_its_completed_webhook_at_once():
    with running_sandbox(SandboxConfig(queue_latency=(5.0, 5.0))) as url, Receiver() as receiver:
        body = {"input": {"prompt": "a fox"}, "webhook": receiver.url}
        prediction = create(url, body=body).json()
        http.post(
            prediction["urls"]["cancel"], headers={"Authorization": f"Bearer {REPLICATE_KEY}"}
        )
        ((_, delivered),) = receiver.wait_for(1, timeout=4)
    assert json.loads(delivered)["status"] == "canceled"


def test_a_configured_secret_signs_the_webhooks():
    secret = "whsec_" + base64.b64encode(b"another secret, for this test").decode()
    config = SandboxConfig(queue_latency=FAST, replicate_webhook_secret=secret)
    with running_sandbox(config) as url, Receiver() as receiver:
        assert secret_of(url) == secret
        body = {"input": {"prompt": "a fox"}, "webhook": receiver.url}
        create(url, body=body)
        for headers, delivered in receiver.wait_for(2):
            verify(secret, headers, delivered)


def test_lost_webhooks_are_counted_and_never_sent():
    config = SandboxConfig(queue_latency=FAST, lose_webhooks=1.0)
    with running_sandbox(config) as url, Receiver() as receiver:
        finished(create(url, body={"input": {"prompt": "a fox"}, "webhook": receiver.url}).json())
        counters = queue_counters(url)
        assert (counters["webhooks_lost"], counters["webhooks_sent"]) == (2, 0)
        assert receiver.attempts == 0
