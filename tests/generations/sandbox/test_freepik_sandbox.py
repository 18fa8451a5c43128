"""The sandbox speaking the Freepik (Magnific) API: tasks, signed webhooks, the WAF, faults."""

from __future__ import annotations

import base64
import json

import pytest

from generations.providers.freepik import FreepikProvider
from generations.sandbox.freepik import WEBHOOK_SECRET
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import FAST, Receiver, picture, png_bytes, wait_until
from tests.generations.sandbox.client import http

KEY = "fp-key-0123456789"
HEADERS = {"x-freepik-api-key": KEY, "User-Agent": "nanoweb-tests/1.0"}
PRO = "text-to-image/nano-banana-pro"


@pytest.fixture(scope="module")
def url():
    with running_sandbox(SandboxConfig(queue_latency=FAST)) as base:
        yield base


def create(url: str, endpoint=PRO, headers=HEADERS, **body):
    body.setdefault("prompt", "a sunset over mountains")
    return http.post(f"{url}/freepik/v1/ai/{endpoint}", json=body, headers=headers, timeout=10)


def finished(url: str, task_id: str, endpoint=PRO) -> dict:
    def done():
        got = http.get(f"{url}/freepik/v1/ai/{endpoint}/{task_id}", headers=HEADERS)
        found = got.json()["data"]
        return found if found["status"] in ("COMPLETED", "FAILED") else None

    return wait_until(done)


def test_a_task_is_created_then_completed_at_the_asked_shape(url):
    answer = create(url, aspect_ratio="16:9", resolution="2K")
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["status"] == "CREATED" and data["generated"] == []
    done = finished(url, data["task_id"])
    assert picture(http.get(done["generated"][0]).content).size == (2752, 1536)


def test_nano_banana_takes_bare_base64_references_and_draws_squares(url):
    ref = base64.b64encode(png_bytes((64, 64))).decode()
    data = create(url, "gemini-2-5-flash-image-preview", reference_images=[ref]).json()["data"]
    done = finished(url, data["task_id"], "gemini-2-5-flash-image-preview")
    assert picture(http.get(done["generated"][0]).content).size == (1024, 1024)


def test_invalid_fields_answer_invalid_params(url):
    answer = create(url, aspect_ratio="7:3")
    assert (
        answer.status_code == 400 and answer.json()["invalid_params"][0]["field"] == "aspect_ratio"
    )


def test_a_default_client_agent_lands_in_the_penalty_box(url):
    answer = create(url, headers={"x-freepik-api-key": KEY, "User-Agent": "python-httpx/0.28"})
    assert answer.status_code == 403 and b"Penalty Box" in answer.content


def test_a_bad_key_is_401(url):
    assert create(url, headers={"x-freepik-api-key": "", "User-Agent": "t/1"}).status_code == 401


def test_webhooks_come_on_each_status_change_signed_as_freepik_documents(url):
    with Receiver() as hook:
        task_id = create(url, webhook_url=hook.url).json()["data"]["task_id"]
        deliveries = hook.wait_for(2)
    statuses = [json.loads(body)["data"]["status"] for _, body in deliveries]
    assert statuses == ["IN_PROGRESS", "COMPLETED"]
    for headers, body in deliveries:
        event = FreepikProvider.verify_webhook(
            headers, body, secret=WEBHOOK_SECRET, keys_url="", now=int(headers["webhook-timestamp"])
        )
        assert event.upstream_id == task_id


@pytest.mark.parametrize(
    ("trigger", "status"), [("credit", 402), ("429", 429), ("daily", 429), ("500", 500)]
)
def test_faults_at_create_take_freepik_s_forms(url, trigger, status):
    answer = create(url, prompt=f"x [sandbox:{trigger}]")
    assert answer.status_code == status and answer.json()["message"]


@pytest.mark.parametrize(
    ("trigger", "status", "nsfw"),
    [
        ("blocked", "FAILED", None),
        ("image_safety", "COMPLETED", [True]),
        ("no_image", "COMPLETED", None),
    ],
)
def test_faults_after_create_show_in_the_task(url, trigger, status, nsfw):
    done = finished(url, create(url, prompt=f"y [sandbox:{trigger}]").json()["data"]["task_id"])
    assert done["status"] == status and done["generated"] == []
    assert done.get("has_nsfw") == nsfw
