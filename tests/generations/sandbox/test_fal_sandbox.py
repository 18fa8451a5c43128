"""The sandbox speaking fal.ai's queue API under /fal: on the wire, faults and webhooks."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import (
    FAL_KEY,
    FAST,
    Receiver,
    fal_done,
    fal_get,
    fal_submit,
    picture,
    png_bytes,
    png_data_uri,
    queue_counters,
    wait_until,
)
from tests.generations.sandbox.client import http

SUBMIT_KEYS = {
    "request_id",
    "gateway_request_id",
    "status",
    "queue_position",
    "status_url",
    "response_url",
    "cancel_url",
}


@pytest.fixture
def fast_url():
    with running_sandbox(SandboxConfig(queue_latency=FAST)) as url:
        yield url


def result_of(url: str, body: dict | None = None, **fields) -> httpx.Response:
    """Submit, wait for COMPLETED, fetch the result."""
    submitted = fal_submit(url, **fields).json() if body is None else body
    fal_done(submitted["status_url"])
    return fal_get(submitted["response_url"])


# --- submit, status, result ---------------------------------------------------------------


def test_it_answers_a_submit_in_fals_shape_with_urls_that_drop_the_subpath(fast_url):
    response = fal_submit(fast_url, "fal-ai/nano-banana/edit", image_urls=[png_data_uri()])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == SUBMIT_KEYS
    assert body["status"] == "IN_QUEUE" and isinstance(body["queue_position"], int)
    assert str(uuid.UUID(body["request_id"])) == body["request_id"] == body["gateway_request_id"]
    base = f"{fast_url}/fal/fal-ai/nano-banana/requests/{body['request_id']}"
    assert (body["response_url"], body["status_url"], body["cancel_url"]) == (
        base,
        f"{base}/status",
        f"{base}/cancel",
    )


def test_the_subpath_form_of_the_request_urls_is_not_found(fast_url):
    body = fal_submit(fast_url, "fal-ai/nano-banana-pro/edit", image_urls=[png_data_uri()]).json()
    wrong = f"{fast_url}/fal/fal-ai/nano-banana-pro/edit/requests/{body['request_id']}"
    assert fal_get(f"{wrong}/status").status_code == 404
    assert fal_get(wrong).status_code == 404
    cancel = http.put(f"{wrong}/cancel", headers={"Authorization": f"Key {FAL_KEY}"})
    assert cancel.status_code == 404
    # The URLs it gave work.
    assert fal_done(body["status_url"])["status"] == "COMPLETED"


def test_it_walks_a_request_through_the_queue_statuses():
    config = SandboxConfig(queue_latency=(1.5, 1.5), queue_concurrency=1)
    with running_sandbox(config) as url:
        first = fal_submit(url, prompt="first").json()
        second = fal_submit(url, prompt="second").json()
        third = fal_submit(url, prompt="third").json()
        assert (first["queue_position"], second["queue_position"], third["queue_position"]) == (
            0,
            0,
            1,
        )
        running = fal_get(first["status_url"])
        assert running.status_code == 202
        assert running.json()["status"] == "IN_PROGRESS" and running.json()["logs"] is None
        queued = fal_get(third["status_url"])
        assert queued.status_code == 202
        assert queued.json()["status"] == "IN_QUEUE" and queued.json()["queue_position"] == 1
        assert fal_get(first["response_url"]).json() == {"detail": "Request is still in progress"}
        assert fal_get(first["response_url"]).status_code == 400
        done = fal_done(first["status_url"])
        assert done["status"] == "COMPLETED" and "error" not in done
        assert done["metrics"]["inference_time"] == pytest.approx(1.5)
        with_logs = fal_get(first["status_url"], logs=1).json()
        assert [entry["message"] for entry in with_logs["logs"]] == ["Generating image...", "Done."]
        assert fal_get(third["status_url"]).json()["queue_position"] == 0


def test_another_key_has_a_queue_of_its_own():
    config = SandboxConfig(queue_latency=(1.5, 1.5), queue_concurrency=1)
    with running_sandbox(config) as url:
        fal_submit(url)
        mine = fal_submit(url).json()
        other = fal_submit(url, key="other-key").json()
        assert fal_get(mine["status_url"]).json()["status"] == "IN_QUEUE"
        assert fal_get(other["status_url"], key="other-key").json()["status"] == "IN_PROGRESS"
        # One key cannot read another's request.
        assert fal_get(other["status_url"]).status_code == 404


def test_it_makes_the_images_asked_for(fast_url):
    response = result_of(
        fast_url,
        endpoint="fal-ai/nano-banana-pro",
        aspect_ratio="16:9",
        resolution="2K",
        num_images=2,
        output_format="webp",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["description"] == "" and len(body["images"]) == 2
    for image in body["images"]:
        assert set(image) == {"url", "content_type", "file_name", "file_size", "width", "height"}
        assert (image["width"], image["height"], image["content_type"]) == (
            2752,
            1536,
            "image/webp",
        )
        served = http.get(image["url"])
        assert served.headers["content-type"] == "image/webp"
        assert len(served.content) == image["file_size"]
        assert picture(served.content).size == (2752, 1536)


def test_nano_banana_2_takes_half_k(fast_url):
    image = result_of(fast_url, endpoint="fal-ai/nano-banana-2", resolution="0.5K").json()
    assert (image["images"][0]["width"], image["images"][0]["height"]) == (512, 512)


def test_an_edit_reads_data_uris_and_the_sandboxs_own_files(fast_url):
    made = result_of(fast_url).json()["images"][0]["url"]
    edited = result_of(
        fast_url,
        endpoint="google/nano-banana-2.1/edit",
        image_urls=[png_data_uri((400, 100)), made],
    )
    assert edited.status_code == 200
    image = edited.json()["images"][0]
    # aspect_ratio "auto" follows the first reference (4:1).
    assert (image["width"], image["height"]) == (2064, 512)


def test_unknown_endpoints_and_keys_are_refused():
    with running_sandbox(SandboxConfig(invalid_keys=frozenset({"bad"}))) as url:
        assert fal_submit(url, "fal-ai/flux/dev").status_code == 404
        missing = fal_submit(url, key=None)
        assert missing.status_code == 401
        wrong = fal_submit(url, key="bad")
        assert (wrong.status_code, wrong.json()) == (
            401,
            {"detail": "No user found for Key ID and Secret"},
        )


# --- cancel ----------------------------------------------------------------------------


def test_it_cancels_a_queued_request_and_refuses_a_finished_one():
    config = SandboxConfig(queue_latency=(1.0, 1.0), queue_concurrency=1)
    with running_sandbox(config) as url:
        first = fal_submit(url).json()
        queued = fal_submit(url, prompt="never made").json()
        headers = {"Authorization": f"Key {FAL_KEY}"}
        cancelled = http.put(queued["cancel_url"], headers=headers)
        assert (cancelled.status_code, cancelled.json()) == (
            202,
            {"status": "CANCELLATION_REQUESTED"},
        )
        status = fal_get(queued["status_url"])
        assert status.status_code == 200
        assert (status.json()["status"], status.json()["error_type"]) == (
            "COMPLETED",
            "client_cancelled",
        )
        assert fal_get(queued["response_url"]).status_code == 499
        again = http.put(queued["cancel_url"], headers=headers)
        assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})
        fal_done(first["status_url"])
        late = http.put(first["cancel_url"], headers=headers)
        assert (late.status_code, late.json()) == (400, {"status": "ALREADY_COMPLETED"})
        unknown = first["cancel_url"].replace(first["request_id"], str(uuid.uuid4()))
        assert http.put(unknown, headers=headers).json() == {"status": "NOT_FOUND"}
        assert queue_counters(url)["cancelled"] == 1


def test_a_cancel_in_progress_is_passed_on_but_the_model_finishes():
    with running_sandbox(SandboxConfig(queue_latency=(0.6, 0.6))) as url:
        body = fal_submit(url).json()
        headers = {"Authorization": f"Key {FAL_KEY}"}
        assert http.put(body["cancel_url"], headers=headers).status_code == 202
        assert "error" not in fal_done(body["status_url"])
        assert fal_get(body["response_url"]).status_code == 200


# --- invalid input: the request completes with fal's 422 ------------------------------------

INVALID = [
    ({"num_images": 5}, "less_than_equal", ["body", "num_images"]),
    ({"num_images": 0}, "greater_than_equal", ["body", "num_images"]),
    ({"aspect_ratio": "7:3"}, "one_of", ["body", "aspect_ratio"]),
    ({"output_format": "gif"}, "one_of", ["body", "output_format"]),
    ({"prompt": None}, "missing", ["body", "prompt"]),
]


@pytest.mark.parametrize(("fields", "kind", "loc"), INVALID)
def test_it_completes_an_invalid_request_with_a_422(fast_url, fields, kind, loc):
    body = {"prompt": "a cat", **fields}
    if body["prompt"] is None:
        del body["prompt"]
    submitted = http.post(
        f"{fast_url}/fal/fal-ai/nano-banana-pro",
        json=body,
        headers={"Authorization": f"Key {FAL_KEY}"},
    ).json()
    response = result_of(fast_url, submitted)
    assert response.status_code == 422
    assert response.headers["x-fal-retryable"] == "false"
    error = response.json()["detail"][0]
    assert (error["type"], error["loc"]) == (kind, loc)
    assert error["url"] == f"https://docs.fal.ai/errors/#{kind}" and error["msg"]


@pytest.mark.parametrize(
    ("urls", "kind"),
    [
        (None, "missing"),
        ([], "sequence_too_short"),
        (
            ["data:image/png;base64," + base64.b64encode(b"not an image").decode()],
            "image_load_error",
        ),
        (["https://example.com/cat.png"], "file_download_error"),
    ],
)
def test_an_edit_needs_images_it_can_read(fast_url, urls, kind):
    fields = {} if urls is None else {"image_urls": urls}
    response = result_of(fast_url, endpoint="fal-ai/nano-banana/edit", **fields)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == kind


# --- faults ------------------------------------------------------------------------------

SUBMIT_FAULTS = {
    "credit": (403, None),
    "429": (429, None),
    "503": (503, "runner_scheduling_failure"),
    "saturated": (503, "runner_scheduling_failure"),
    "500": (500, "internal_error"),
}


@pytest.mark.parametrize("trigger", SUBMIT_FAULTS)
def test_it_refuses_a_submit_with_fals_answer(fast_url, trigger):
    status, error_type = SUBMIT_FAULTS[trigger]
    response = fal_submit(fast_url, prompt=f"a cat [sandbox:{trigger}]")
    assert response.status_code == status
    if trigger == "credit":
        assert response.json() == {
            "detail": "User is locked. Reason: Exhausted balance. "
            "Top up your balance at fal.ai/dashboard/billing."
        }
    if error_type:
        assert response.headers["x-fal-error-type"] == error_type
        assert response.headers["x-fal-retryable"] == "true"
        assert response.json()["error_type"] == error_type
    assert queue_counters(fast_url)["submitted"] == 0


def test_a_broke_key_is_always_out_of_credit():
    with running_sandbox(SandboxConfig(broke_keys=frozenset({FAL_KEY}))) as url:
        assert fal_submit(url).status_code == 403
        assert fal_submit(url, key="paid-up").status_code == 200


COMPLETION_FAULTS = {
    "blocked": (422, "content_policy_violation"),
    "image_safety": (422, "content_policy_violation"),
    "no_image": (422, "no_media_generated"),
    "text_only": (422, "no_media_generated"),
    "region": (400, "downstream_service_error"),
    "capacity": (500, "downstream_service_unavailable"),
}


@pytest.mark.parametrize("trigger", COMPLETION_FAULTS)
def test_it_completes_a_faulty_request_with_fals_model_error(fast_url, trigger):
    status, kind = COMPLETION_FAULTS[trigger]
    submitted = fal_submit(fast_url, prompt=f"a cat [sandbox:{trigger}]").json()
    done = fal_done(submitted["status_url"])
    assert done["status"] == "COMPLETED" and done["error"] == f"Invalid status code: {status}"
    response = fal_get(submitted["response_url"])
    assert response.status_code == status
    assert response.json()["detail"][0]["type"] == kind
    if kind == "content_policy_violation":
        assert response.json()["detail"][0]["msg"] == (
            "The content could not be processed because it contained material flagged by a "
            "content checker."
        )
        assert response.headers["x-fal-retryable"] == "false"


def test_a_deadline_is_a_request_timeout(fast_url):
    submitted = fal_submit(fast_url, prompt="a cat [sandbox:504]").json()
    done = fal_done(submitted["status_url"])
    assert (done["error"], done["error_type"]) == ("Request timed out", "request_timeout")
    response = fal_get(submitted["response_url"])
    assert response.status_code == 504
    assert response.headers["x-fal-error-type"] == "request_timeout"


def test_a_malformed_request_answers_unreadable_json_once_done(fast_url):
    submitted = fal_submit(fast_url, prompt="a cat [sandbox:malformed]").json()
    assert fal_get(submitted["status_url"]).status_code in (200, 202)

    def completed():
        response = fal_get(submitted["status_url"])
        return response if response.status_code == 200 else None

    with pytest.raises(json.JSONDecodeError):
        wait_until(completed).json()
    with pytest.raises(json.JSONDecodeError):
        fal_get(submitted["response_url"]).json()


def test_a_truncated_image_is_cut_short(fast_url):
    image = result_of(fast_url, prompt="a cat [sandbox:truncated]").json()["images"][0]
    data = http.get(image["url"]).content
    assert 0 < len(data) == image["file_size"]
    with pytest.raises(OSError):
        picture(data)


def test_a_slow_queue_request_takes_longer():
    config = SandboxConfig(queue_latency=FAST, slow_queue_seconds=1.0)
    with running_sandbox(config) as url:
        slow = fal_submit(url, prompt="a cat [sandbox:slow_queue]").json()
        quick = fal_submit(url, prompt="a dog").json()
        fal_done(quick["status_url"])
        assert fal_get(slow["status_url"]).json()["status"] == "IN_PROGRESS"
        assert fal_done(slow["status_url"])["metrics"]["inference_time"] >= 1.0


def test_a_timeout_holds_the_submit_without_answering():
    with running_sandbox(SandboxConfig(hang_seconds=600)) as url:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.post(
                f"{url}/fal/fal-ai/nano-banana",
                json={"prompt": "a cat [sandbox:timeout]"},
                headers={"Authorization": f"Key {FAL_KEY}"},
                timeout=0.5,
            )
        assert time.monotonic() - started < 5


def test_a_counted_trigger_fails_that_many_submits_then_queues(fast_url):
    prompt = "a cat [sandbox:503x2]"
    statuses = [fal_submit(fast_url, prompt=prompt).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert queue_counters(fast_url)["submitted_by_prompt"] == {prompt: 1}


# --- webhooks ----------------------------------------------------------------------------


def verify(jwks: dict, headers: dict[str, str], body: bytes) -> None:
    """Check a delivery as fal's docs say: Ed25519 over id, user, time and sha256(body)."""
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    (key,) = jwks["keys"]
    assert (key["kty"], key["crv"]) == ("OKP", "Ed25519") and key["kid"]
    raw = base64.urlsafe_b64decode(key["x"] + "=" * (-len(key["x"]) % 4))
    Ed25519PublicKey.from_public_bytes(raw).verify(
        bytes.fromhex(headers["x-fal-webhook-signature"]), message
    )


def test_it_posts_a_signed_webhook_verifiable_with_the_published_jwks(fast_url):
    jwks = http.get(f"{fast_url}/fal/.well-known/jwks.json").json()
    with Receiver() as receiver:
        submitted = fal_submit(fast_url, webhook=receiver.url).json()
        ((headers, body),) = receiver.wait_for(1)
    verify(jwks, headers, body)
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 60
    assert headers["x-fal-webhook-request-id"] == submitted["request_id"]
    payload = json.loads(body)
    assert set(payload) == {"request_id", "gateway_request_id", "status", "payload", "error"}
    assert (payload["status"], payload["error"]) == ("OK", None)
    assert payload["payload"]["images"][0]["url"].startswith(f"{fast_url}/files/")
    with pytest.raises(InvalidSignature):
        verify(jwks, headers, body + b" ")
    wait_until(lambda: queue_counters(fast_url)["webhooks_sent"] == 1)


def test_a_failed_request_posts_an_error_webhook(fast_url):
    with Receiver() as receiver:
        fal_submit(fast_url, prompt="a cat [sandbox:blocked]", webhook=receiver.url)
        ((_, body),) = receiver.wait_for(1)
    payload = json.loads(body)
    assert (payload["status"], payload["error"]) == ("ERROR", "Invalid status code: 422")
    assert payload["payload"]["detail"][0]["type"] == "content_policy_violation"


def test_it_retries_a_webhook_the_receiver_refused():
    config = SandboxConfig(queue_latency=FAST, webhook_backoff=0.05, webhook_retries=3)
    with running_sandbox(config) as url, Receiver(fail_first=2) as receiver:
        fal_submit(url, webhook=receiver.url)
        receiver.wait_for(1)
        assert receiver.attempts == 3
        wait_until(lambda: queue_counters(url)["webhooks_sent"] == 1)


def test_it_gives_up_after_its_retries():
    config = SandboxConfig(queue_latency=FAST, webhook_backoff=0.02, webhook_retries=2)
    with running_sandbox(config) as url, Receiver(fail_first=10) as receiver:
        fal_submit(url, webhook=receiver.url)
        wait_until(lambda: queue_counters(url)["webhooks_failed"] == 1)
        assert receiver.attempts == 3 and receiver.deliveries == []


def test_lost_webhooks_never_arrive():
    config = SandboxConfig(queue_latency=FAST, lose_webhooks=1.0)
    with running_sandbox(config) as url, Receiver() as receiver:
        submitted = fal_submit(url, webhook=receiver.url).json()
        fal_done(submitted["status_url"])
        counters = queue_counters(url)
        assert (counters["webhooks_lost"], counters["webhooks_sent"]) == (1, 0)
        assert receiver.attempts == 0


def test_it_counts_submissions_and_polls(fast_url):
    first = fal_submit(fast_url, prompt="one").json()
    fal_submit(fast_url, prompt="two")
    fal_submit(fast_url, prompt="two")
    fal_get(first["status_url"])
    counters = queue_counters(fast_url)
    assert counters["submitted"] == 3
    assert counters["submitted_by_prompt"] == {"one": 1, "two": 2}
    assert counters["polls"] == 1


def test_a_reference_too_many_is_refused(fast_url):
    urls = ["data:image/png;base64," + base64.b64encode(png_bytes()).decode()] * 15
    response = result_of(fast_url, endpoint="fal-ai/nano-banana-pro/edit", image_urls=urls)
    assert response.json()["detail"][0]["type"] == "sequence_too_long"
