"""The sandbox speaking Stability AI's Stable Image API under /stability."""

from __future__ import annotations

import base64

import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import picture, png_bytes
from tests.generations.sandbox.client import http

KEY = "sk-sandbox0123456789"


@pytest.fixture(scope="module")
def sandbox():
    config = SandboxConfig(broke_keys=frozenset({"sk-broke"}), invalid_keys=frozenset({"sk-bad"}))
    with running_sandbox(config) as url:
        yield url


def generate(url, endpoint="ultra", *, key=KEY, accept="image/*", image=None, **fields):
    fields.setdefault("prompt", "a lighthouse at dusk")
    parts = {name: (None, str(value).encode()) for name, value in fields.items()}
    if image is not None:
        parts["image"] = ("ref.png", image, "image/png")
    headers = {"Authorization": f"Bearer {key}", "Accept": accept}
    return http.post(
        f"{url}/stability/v2beta/stable-image/generate/{endpoint}",
        files=parts,
        headers=headers,
        timeout=20,
    )


@pytest.mark.parametrize(
    ("endpoint", "ratio", "size"),
    [
        ("ultra", "16:9", (1344, 768)),
        ("core", "1:1", (1536, 1536)),
        ("sd3", "9:21", (640, 1536)),
    ],
)
def test_each_endpoint_answers_image_bytes_of_its_size(sandbox, endpoint, ratio, size):
    answer = generate(sandbox, endpoint, aspect_ratio=ratio)
    assert answer.status_code == 200
    assert answer.headers["finish-reason"] == "SUCCESS" and answer.headers["seed"].isdigit()
    assert answer.headers["content-type"] == "image/png" and answer.headers["x-request-id"]
    assert picture(answer.content).size == size


def test_the_json_form_carries_base64_and_the_finish_reason(sandbox):
    answer = generate(sandbox, "core", accept="application/json", output_format="jpeg", seed=5)
    body = answer.json()
    assert body["finish_reason"] == "SUCCESS" and body["seed"] == 5
    assert picture(base64.b64decode(body["image"])).format == "JPEG"


def test_image_to_image_keeps_the_reference_s_ratio(sandbox):
    reference = png_bytes((200, 100))
    answer = generate(sandbox, "sd3", image=reference, mode="image-to-image", strength=0.5)
    assert answer.status_code == 200
    image = picture(answer.content)
    assert image.width > image.height
    missing = generate(sandbox, "ultra", image=reference)
    assert missing.status_code == 400 and "strength" in missing.json()["errors"][0]


def test_bad_parameters_are_400_bad_request(sandbox):
    answer = generate(sandbox, aspect_ratio="4:3")
    body = answer.json()
    assert answer.status_code == 400 and body["name"] == "bad_request" and body["id"]
    assert generate(sandbox, "sd3", model="sd9").status_code == 400
    assert generate(sandbox, prompt="").status_code == 400


def test_keys_and_the_balance(sandbox):
    assert generate(sandbox, key="sk-bad").json()["name"] == "unauthorized"
    assert generate(sandbox, key="sk-broke").status_code == 402
    headers = {"Authorization": f"Bearer {KEY}"}
    assert http.get(f"{sandbox}/stability/v1/user/balance", headers=headers).json() == {
        "credits": 25.0
    }


@pytest.mark.parametrize(
    ("trigger", "status", "name"),
    [
        ("blocked", 403, "content_moderation"),
        ("429", 429, "rate_limit_exceeded"),
        ("credit", 402, "payment_required"),
        ("503", 503, "service_unavailable"),
        ("500", 500, "internal_error"),
        ("504", 504, "gateway_timeout"),
        ("region", 422, "invalid_request"),
    ],
)
def test_faults_take_stability_s_forms(sandbox, trigger, status, name):
    answer = generate(sandbox, prompt=f"a cat [sandbox:{trigger}]")
    assert answer.status_code == status and answer.json()["name"] == name


def test_a_filtered_output_comes_back_blurred_and_marked(sandbox):
    answer = generate(sandbox, prompt="a cat [sandbox:image_safety]")
    assert answer.status_code == 200 and answer.headers["finish-reason"] == "CONTENT_FILTERED"
    assert picture(answer.content).size == (1024, 1024)


def test_an_unknown_endpoint_is_404(sandbox):
    answer = generate(sandbox, "turbo")
    assert answer.status_code == 404 and answer.json()["name"] == "not_found"
