"""The sandbox's Hugging Face Space (a Gradio 5 app), called the way the curl guide does."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.sandbox.channels import png_bytes, queue_counters
from tests.generations.sandbox.client import http

ARGS = ["a lighthouse at dusk", 3, True, 768, 512, 4]


@pytest.fixture(scope="module")
def url():
    with running_sandbox(SandboxConfig(queue_latency=(0.05, 0.05))) as base:
        yield base


def call(url: str, data: list, api: str = "infer", **headers) -> list[tuple[str, str]]:
    """POST the call, read the stream; the (event, data) pairs."""
    started = http.post(f"{url}/hf/gradio_api/call/{api}", json={"data": data}, headers=headers)
    assert started.status_code == 200, started.text
    event_id = started.json()["event_id"]
    answer = http.get(f"{url}/hf/gradio_api/call/{api}/{event_id}", headers=headers, timeout=10)
    assert answer.headers["content-type"].startswith("text/event-stream")
    pairs = []
    for block in answer.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        pairs.append((lines["event"], lines["data"]))
    return pairs


def test_it_makes_the_image_at_the_size_asked_and_serves_the_file(url):
    event, data = call(url, ARGS)[-1]
    assert event == "complete"
    image, seed = json.loads(data)
    assert seed == 3 and image["meta"] == {"_type": "gradio.FileData"}
    assert image["url"] == f"{url}/hf/gradio_api/file={image['path']}"
    picture = Image.open(io.BytesIO(http.get(image["url"]).content))
    assert (picture.format, picture.size) == ("WEBP", (768, 512))
    assert queue_counters(url)["submitted_by_prompt"]["a lighthouse at dusk"] >= 1


def test_an_uploaded_file_is_an_input_for_the_edit_endpoint(url):
    upload = http.post(
        f"{url}/hf/gradio_api/upload", files=[("files", ("ref.png", png_bytes(), "image/png"))]
    )
    [path] = upload.json()
    data = [{"path": path, "meta": {"_type": "gradio.FileData"}}, "make it blue", 1, 512, 512]
    assert call(url, data, "edit")[-1][0] == "complete"
    missing = [{"path": "/tmp/gradio/nope.png"}, "make it blue", 1, 512, 512]
    assert "upload an input image" in call(url, missing, "edit")[-1][1]


def test_the_schema_lists_the_endpoints_and_their_parameters(url):
    info = http.get(f"{url}/hf/gradio_api/info").json()
    assert len(info["named_endpoints"]["/infer"]["parameters"]) == 6
    assert "/edit" in info["named_endpoints"]


def test_a_zerogpu_quota_error_names_the_wait(url):
    event, data = call(url, ["x [sandbox:daily]", 1, True, 512, 512, 4])[-1]
    error = json.loads(data)
    assert event == "error" and error["title"] == "ZeroGPU quota exceeded"
    assert "exceeded your GPU quota" in error["error"] and "Try again in" in error["error"]


@pytest.mark.parametrize(
    ("trigger", "status"), [("503", 503), ("500", 500), ("429", 429), ("504", 504)]
)
def test_faults_at_the_call_take_their_http_forms(url, trigger, status):
    data = [f"x [sandbox:{trigger}]", 1, True, 512, 512, 4]
    assert http.post(f"{url}/hf/gradio_api/call/infer", json={"data": data}).status_code == status


def test_an_unknown_endpoint_is_gradio_s_500_and_a_wrong_count_an_error_event(url):
    assert http.post(f"{url}/hf/gradio_api/call/nope", json={"data": []}).status_code == 500
    assert "needed: 6, got: 1" in call(url, ["a cat"])[-1][1]


def test_a_token_the_hub_refuses_is_401():
    with running_sandbox(SandboxConfig(invalid_keys=frozenset({"hf_bad"}))) as base:
        answer = http.post(
            f"{base}/hf/gradio_api/call/infer",
            json={"data": ARGS},
            headers={"Authorization": "Bearer hf_bad"},
        )
    assert answer.status_code == 401
