"""The sandbox's ComfyUI server, called the way script_examples/ does."""

from __future__ import annotations

import copy
import io
import time

import pytest
from PIL import Image

from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.generations.providers.test_comfyui import WORKFLOW
from tests.generations.sandbox.channels import png_bytes, wait_until
from tests.generations.sandbox.client import http

TEXT_TO_IMAGE = {k: v for k, v in WORKFLOW.items() if k != "10"}


@pytest.fixture(scope="module")
def url():
    with running_sandbox(SandboxConfig(queue_latency=(0.05, 0.05))) as base:
        yield f"{base}/comfyui"


def queue_prompt(url: str, workflow: dict, text: str = "a lighthouse") -> dict:
    workflow = copy.deepcopy(workflow)
    workflow["6"]["inputs"]["text"] = text
    return http.post(f"{url}/prompt", json={"prompt": workflow, "client_id": "t"}).json()


def finished(url: str, prompt_id: str) -> dict:
    return wait_until(lambda: http.get(f"{url}/history/{prompt_id}").json().get(prompt_id))


def test_a_prompt_runs_and_its_image_is_served_by_view(url):
    answer = queue_prompt(url, TEXT_TO_IMAGE)
    assert answer["node_errors"] == {} and isinstance(answer["number"], int)
    entry = finished(url, answer["prompt_id"])
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"]
    [image] = entry["outputs"]["9"]["images"]
    assert image["type"] == "output" and image["filename"].startswith("ComfyUI_")
    data = http.get(f"{url}/view", params=image).content
    assert Image.open(io.BytesIO(data)).size == (512, 512)
    assert http.get(
        f"{url.replace('/comfyui', '/comfyui/api')}/history/{answer['prompt_id']}"
    ).json()


def test_an_uploaded_image_is_what_load_image_reads(url):
    upload = http.post(
        f"{url}/upload/image",
        files={"image": ("ref.png", png_bytes(), "image/png")},
        data={"overwrite": "true"},
    ).json()
    assert upload == {"name": "ref.png", "subfolder": "", "type": "input"}
    unknown = queue_prompt(url, WORKFLOW)  # still names example.png, never uploaded
    assert "Invalid image file: example.png" in str(unknown["node_errors"]["10"])
    workflow = copy.deepcopy(WORKFLOW)
    workflow["10"]["inputs"]["image"] = upload["name"]
    assert queue_prompt(url, workflow)["node_errors"] == {}


def test_a_workflow_that_does_not_validate_is_refused_with_node_errors(url):
    workflow = copy.deepcopy(TEXT_TO_IMAGE)
    workflow["5"]["inputs"]["width"] = 20000
    answer = http.post(f"{url}/prompt", json={"prompt": workflow})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert "bigger than max of 16384: width" in body["node_errors"]["5"]["errors"][0]["details"]
    unknown = {**TEXT_TO_IMAGE, "4": {"class_type": "Nope", "inputs": {}}}
    refused = http.post(f"{url}/prompt", json={"prompt": unknown}).json()
    assert "node Nope does not exist" in refused["error"]["message"]
    no_output = {k: v for k, v in TEXT_TO_IMAGE.items() if k != "9"}
    assert http.post(f"{url}/prompt", json={"prompt": no_output}).json()["error"]["type"] == (
        "prompt_no_outputs"
    )


def test_out_of_memory_fails_the_run_with_an_execution_error(url):
    entry = finished(url, queue_prompt(url, TEXT_TO_IMAGE, "x [sandbox:capacity]")["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_error" in kinds
    error = dict(entry["status"]["messages"])["execution_error"]
    assert "CUDA out of memory" in error["exception_message"] and error["node_type"] == "KSampler"


def test_a_pending_prompt_is_deleted_and_a_running_one_interrupted():
    with running_sandbox(SandboxConfig(queue_latency=(5, 5), queue_concurrency=1)) as base:
        url = f"{base}/comfyui"
        running = queue_prompt(url, TEXT_TO_IMAGE, "one")["prompt_id"]
        pending = queue_prompt(url, TEXT_TO_IMAGE, "two")["prompt_id"]
        queue = http.get(f"{url}/queue").json()
        assert [i[1] for i in queue["queue_running"]] == [running]
        assert [i[1] for i in queue["queue_pending"]] == [pending]
        http.post(f"{url}/queue", json={"delete": [pending]})
        http.post(f"{url}/interrupt", json={"prompt_id": "someone-else"})
        assert http.get(f"{url}/history/{running}").json() == {}  # still running
        http.post(f"{url}/interrupt", json={"prompt_id": running})
        time.sleep(0.05)
        entry = http.get(f"{url}/history/{running}").json()[running]
        assert "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
        assert http.get(f"{url}/queue").json() == {"queue_running": [], "queue_pending": []}
        assert http.get(f"{url}/history/{pending}").json() == {}


def test_a_restarted_server_forgets_its_jobs(url):
    prompt_id = queue_prompt(url, TEXT_TO_IMAGE)["prompt_id"]
    finished(url, prompt_id)
    http.post(f"{url}/sandbox/restart")
    assert http.get(f"{url}/history/{prompt_id}").json() == {}


def test_the_free_calls_answer(url):
    stats = http.get(f"{url}/system_stats").json()
    assert stats["system"]["comfyui_version"] and stats["devices"]
    assert "KSampler" in http.get(f"{url}/object_info/KSampler").json()
    assert http.get(f"{url}/object_info/NoSuchNode").json() == {}
