"""The sandbox speaking Higgsfield's platform API under /higgsfield."""

from __future__ import annotations

import json

import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import (
    FAST,
    Receiver,
    picture,
    png_data_uri,
    queue_counters,
    wait_until,
)
from tests.generations.sandbox.client import http

KEY = "sandbox-id:sandbox-secret-0123456789"
NB = "sandbox/nano-banana-pro"
SOUL = "higgsfield-ai/soul/standard"


@pytest.fixture
def sandbox():
    with running_sandbox(SandboxConfig(queue_latency=FAST, queue_concurrency=2)) as url:
        yield url


def submit(url: str, model: str = NB, *, key: str = KEY, headers=None, params=None, **body):
    body.setdefault("prompt", "a lighthouse at dusk")
    sent = {"Authorization": f"Key {key}", **(headers or {})}
    return http.post(
        f"{url}/higgsfield/{model}", json=body, headers=sent, params=params, timeout=10
    )


def status(url: str, key: str = KEY) -> dict:
    return http.get(url, headers={"Authorization": f"Key {key}"}, timeout=10).json()


def finished(status_url: str) -> dict:
    return wait_until(
        lambda: (s := status(status_url))["status"] not in ("queued", "in_progress") and s
    )


def test_a_request_is_queued_then_completes_with_a_rendered_image(sandbox):
    answer = submit(sandbox, aspect_ratio="16:9", resolution="1k")
    assert answer.status_code == 200 and answer.headers["x-correlation-id"]
    body = answer.json()
    assert set(body) == {"status", "request_id", "status_url", "cancel_url"}
    assert body["status"] == "queued"
    done = finished(body["status_url"])
    assert done["status"] == "completed" and done["request_id"] == body["request_id"]
    image = picture(http.get(done["images"][0]["url"], timeout=10).content)
    assert image.width > image.height and min(image.size) == 1024


def test_the_legacy_key_headers_work_and_a_wrong_key_is_401(sandbox):
    legacy = {"hf-api-key": "sandbox-id", "hf-secret": "sandbox-secret-0123456789"}
    ok = http.post(f"{sandbox}/higgsfield/{SOUL}", json={"prompt": "x"}, headers=legacy)
    assert ok.status_code == 200
    missing = http.post(f"{sandbox}/higgsfield/{SOUL}", json={"prompt": "x"})
    assert (missing.status_code, missing.json()) == (401, {"detail": "Invalid credentials"})


def test_the_same_idempotency_key_returns_the_original_request(sandbox):
    headers = {"Idempotency-Key": "job-1-attempt-1"}
    first = submit(sandbox, headers=headers).json()
    again = submit(sandbox, headers=headers).json()
    assert again["request_id"] == first["request_id"]
    assert queue_counters(sandbox)["submitted"] == 1
    changed = submit(sandbox, headers=headers, prompt="something else")
    assert changed.status_code == 422


def test_validation_is_fastapi_s_and_does_not_consume_the_key(sandbox):
    headers = {"Idempotency-Key": "k-2"}
    bad = submit(sandbox, headers=headers, resolution="8k")
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "resolution"]
    assert submit(sandbox, headers=headers).status_code == 200


def test_references_are_image_url_objects(sandbox):
    good = [{"type": "image_url", "image_url": png_data_uri()}]
    assert submit(sandbox, input_images=good).status_code == 200
    bad = submit(sandbox, input_images=[png_data_uri()])
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "input_images", 0]


def test_cancel_works_only_while_queued():
    with running_sandbox(SandboxConfig(queue_latency=(30, 30), queue_concurrency=1)) as url:
        running = submit(url, prompt="first").json()
        queued = submit(url, prompt="second").json()
        auth = {"Authorization": f"Key {KEY}"}
        assert http.post(queued["cancel_url"], headers=auth).status_code == 202
        assert status(queued["status_url"])["status"] == "canceled"
        assert http.post(running["cancel_url"], headers=auth).status_code == 400


def test_a_full_queue_is_429_account_queue_full_with_retry_after():
    with running_sandbox(SandboxConfig(queue_latency=(30, 30), queue_concurrency=1)) as url:
        answers = [submit(url, prompt=f"p{i}") for i in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        full = answers[-1]
        assert full.json()["code"] == "account_queue_full" and full.json()["limit"] == 2
        assert int(full.headers["Retry-After"]) >= 1


@pytest.mark.parametrize(
    ("trigger", "http_status", "final"),
    [
        ("credit", 403, None),
        ("429", 429, None),
        ("503", 503, None),
        ("500", 500, None),
        ("region", 423, None),
        ("blocked", 200, "nsfw"),
        ("deadline", 200, "failed"),
        ("no_image", 200, "completed"),
    ],
)
def test_faults_take_higgsfield_s_forms(sandbox, trigger, http_status, final):
    answer = submit(sandbox, prompt=f"a cat [sandbox:{trigger}]")
    assert answer.status_code == http_status
    if final is None:
        assert "detail" in answer.json()
        return
    done = finished(answer.json()["status_url"])
    assert done["status"] == final
    if final == "completed":
        assert done["images"] == []
    if final == "failed":
        assert done["error"]


def test_a_webhook_gets_the_final_status(sandbox):
    with Receiver() as hook:
        body = submit(sandbox, params={"hf_webhook": hook.url}).json()
        ((headers, raw),) = hook.wait_for(1)
    delivered = json.loads(raw)
    assert delivered["request_id"] == body["request_id"] and delivered["status"] == "completed"


def test_an_unknown_model_is_404(sandbox):
    answer = submit(sandbox, model="nobody/nothing")
    assert answer.status_code == 404 and answer.json()["detail"]
