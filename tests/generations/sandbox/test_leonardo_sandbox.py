"""The sandbox speaking Leonardo.ai's REST API: uploads, generations, squaring, faults."""

from __future__ import annotations

import json

import pytest

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import FAST, picture, png_bytes, wait_until
from tests.generations.sandbox.client import http

KEY = "leo-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def url():
    with running_sandbox(SandboxConfig(queue_latency=FAST, invalid_keys={"bad-key"})) as base:
        yield base


def create(url: str, model="gemini-image-2", width=1376, height=768, **params):
    params = {"prompt": "a koala", "width": width, "height": height, "quantity": 1, **params}
    body = {"model": model, "parameters": params, "public": False}
    return http.post(f"{url}/leonardo/v2/generations", json=body, headers=AUTH, timeout=10)


def finished(url: str, generation_id: str) -> dict:
    def done():
        got = http.get(f"{url}/leonardo/v1/generations/{generation_id}", headers=AUTH, timeout=10)
        found = got.json()["generations_by_pk"]
        return found if found["status"] != "PENDING" else None

    return wait_until(done)


def upload(url: str, data: bytes) -> str:
    target = http.post(f"{url}/leonardo/v1/init-image", json={"extension": "png"}, headers=AUTH)
    node = target.json()["uploadInitImage"]
    sent = http.post(node["url"], data=json.loads(node["fields"]), files={"file": ("r.png", data)})
    assert sent.status_code == 204
    return node["id"]


def test_it_makes_a_listed_pair_at_its_size_and_reports_credits(url):
    answer = create(url)
    assert answer.status_code == 200
    job = answer.json()["generate"]
    assert job["apiCreditCost"] > 0
    found = finished(url, job["generationId"])
    assert found["status"] == "COMPLETE" and found["generated_images"][0]["nsfw"] is False
    image = picture(http.get(found["generated_images"][0]["url"]).content)
    assert image.size == (1376, 768) and image.format == "JPEG"


def test_a_pair_it_does_not_list_comes_back_square(url):
    found = finished(url, create(url, width=1536, height=1024).json()["generate"]["generationId"])
    assert picture(http.get(found["generated_images"][0]["url"]).content).size == (1024, 1024)


def test_references_must_be_uploaded_first(url):
    image_id = upload(url, png_bytes())
    ref = {"image": {"id": image_id, "type": "UPLOADED"}, "strength": "MID"}
    assert create(url, guidances={"image_reference": [ref]}).status_code == 200
    ref["image"]["id"] = "00000000-0000-4000-8000-000000000000"
    assert create(url, guidances={"image_reference": [ref]}).status_code == 400


def test_an_upload_with_wrong_fields_is_refused(url):
    target = http.post(f"{url}/leonardo/v1/init-image", json={"extension": "png"}, headers=AUTH)
    node = target.json()["uploadInitImage"]
    fields = {**json.loads(node["fields"]), "x-amz-signature": "forged"}
    sent = http.post(node["url"], data=fields, files={"file": ("r.png", png_bytes())})
    assert sent.status_code == 403


def test_the_account_and_the_key_check(url):
    me = http.get(f"{url}/leonardo/v1/me", headers=AUTH).json()["user_details"][0]
    assert me["apiConcurrencySlots"] == 10 and me["apiSubscriptionTokens"] > 0
    bad = http.get(f"{url}/leonardo/v1/me", headers={"Authorization": "Bearer bad-key"})
    assert bad.status_code == 401 and "error" in bad.json()


def test_an_unknown_model_and_an_unknown_generation(url):
    assert create(url, model="gemini-image-9").status_code == 400
    lost = http.get(
        f"{url}/leonardo/v1/generations/{'0' * 8}-0000-4000-8000-{'0' * 12}", headers=AUTH
    )
    assert lost.json() == {"generations_by_pk": None}


@pytest.mark.parametrize(
    ("trigger", "status", "said"),
    [("credit", 400, "not enough api tokens"), ("429", 429, "Too many"),
     ("blocked", 400, "moderation"), ("503", 503, "unavailable")],
)  # fmt: skip
def test_faults_at_create_take_leonardo_s_forms(url, trigger, status, said):
    answer = create(url, prompt=f"x [sandbox:{trigger}]")
    assert answer.status_code == status and said in answer.json()["error"]


@pytest.mark.parametrize(
    ("trigger", "status", "images", "nsfw"),
    [("image_safety", "COMPLETE", 1, True), ("no_image", "COMPLETE", 0, None),
     ("capacity", "FAILED", 0, None)],
)  # fmt: skip
def test_faults_after_create_show_in_the_generation(url, trigger, status, images, nsfw):
    job = create(url, prompt=f"y [sandbox:{trigger}]").json()["generate"]["generationId"]
    found = finished(url, job)
    assert found["status"] == status and len(found["generated_images"]) == images
    if nsfw is not None:
        assert found["generated_images"][0]["nsfw"] is nsfw
