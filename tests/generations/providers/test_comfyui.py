"""The ComfyUI provider against ComfyUI's documented answers, on a mocked transport."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    Pending,
    Reference,
    Timeouts,
    UpstreamJob,
    provider_class,
)
from generations.providers.comfyui import (
    ComfyUIProvider,
    build_prompt,
    classify_error,
    output_images,
)
from generations.providers.common import pixel_size
from tests.generations.providers.test_fal import FakeFal, failure, reply
from tests.generations.providers.test_openai_images import image_bytes

BASE = "http://comfyui:8188"
PID = "c3e21cbf-1cde-479b-99bc-a629bc2c7aef"
# script_examples/websockets_api_example.py's workflow, plus a LoadImage for img2img.
WORKFLOW = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "cfg": 8,
            "denoise": 1,
            "latent_image": ["5", 0],
            "model": ["4", 0],
            "negative": ["7", 0],
            "positive": ["6", 0],
            "sampler_name": "euler",
            "scheduler": "normal",
            "seed": 8566257,
            "steps": 20,
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5.ckpt"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"batch_size": 1, "height": 512, "width": 512},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "a girl"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "bad hands"}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    "10": {"class_type": "LoadImage", "inputs": {"image": "example.png"}},
}
NODES = {
    "prompt": "6.inputs.text",
    "width": "5.inputs.width",
    "height": "5.inputs.height",
    "seed": "3.inputs.seed",
    "image": "10.inputs.image",
}
OPTIONS = {"workflow": WORKFLOW, "nodes": NODES}


def request(**kwargs) -> ImageRequest:
    kwargs.setdefault("upstream_model", "sdxl-workflow")
    kwargs.setdefault("prompt", "an axolotl reading a newspaper")
    kwargs.setdefault("aspect_ratio", "16:9")
    kwargs.setdefault("image_size", "1K")
    return ImageRequest(**kwargs)


def provider(handler, *, key: str = "none", options=None) -> ComfyUIProvider:
    client = httpx.Client(transport=httpx.MockTransport(handler))
    return ComfyUIProvider(BASE, key, Timeouts(read=5.0), client=client, options=options or OPTIONS)


def history(status: str = "success", outputs=None, messages=None) -> dict:
    outputs = (
        {"9": {"images": [{"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}]}}
        if outputs is None
        else outputs
    )
    return {
        PID: {
            "prompt": [0, PID, WORKFLOW, {}, ["9"]],
            "outputs": outputs,
            "status": {
                "status_str": status,
                "completed": status == "success",
                "messages": messages or [["execution_start", {"prompt_id": PID}]],
            },
            "meta": {},
        }
    }


def queue(running=(), pending=()) -> dict:
    return {
        "queue_running": [[0, p, {}, {}, ["9"]] for p in running],
        "queue_pending": [[1, p, {}, {}, ["9"]] for p in pending],
    }


def test_it_is_the_registered_comfyui_provider():
    assert provider_class("comfyui") is ComfyUIProvider and ComfyUIProvider.queued


# --- the workflow ---------------------------------------------------------------------------


def test_the_named_inputs_are_set_and_the_rest_kept():
    original = copy.deepcopy(WORKFLOW)
    prompt, chosen = build_prompt(OPTIONS, request(), image_name="ref.png", seed=42)
    assert prompt["6"]["inputs"]["text"] == "an axolotl reading a newspaper"
    assert (prompt["5"]["inputs"]["width"], prompt["5"]["inputs"]["height"]) == (1344, 768)
    assert prompt["3"]["inputs"]["seed"] == 42 and prompt["10"]["inputs"]["image"] == "ref.png"
    assert prompt["7"] == WORKFLOW["7"] and original == WORKFLOW
    assert chosen == {"width": 1344, "height": 768, "seed": 42}


@pytest.mark.parametrize(
    ("ratio", "size", "expected"),
    [
        ("1:1", "1K", (1024, 1024)),
        ("16:9", "1K", (1344, 768)),
        ("3:4", "2K", (1792, 2368)),
        ("1:1", None, (1024, 1024)),
    ],
)
def test_sizes_keep_the_step_s_area_at_the_ratio(ratio, size, expected):
    assert pixel_size(ratio, size) == expected


def test_sides_can_be_set_by_the_admin():
    assert pixel_size("1:1", "1K", {"1K": 512}) == (512, 512)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"nodes": NODES}, "options.workflow"),
        ({"workflow": WORKFLOW}, "options.nodes.prompt"),
        ({"workflow": WORKFLOW, "nodes": {"prompt": "6.text"}}, "<node id>.inputs.<input>"),
        ({"workflow": WORKFLOW, "nodes": {"prompt": "66.inputs.text"}}, "66.inputs.text"),
        ({"workflow": WORKFLOW, "nodes": {"prompt": "6.inputs.prompt"}}, "no input prompt"),
        (
            {"workflow": WORKFLOW, "nodes": {"prompt": "6.inputs.text", "steps": "3.inputs.steps"}},
            "Unknown node role steps",
        ),
        ({"workflow": {"1": {"class_type": "X"}}, "nodes": {"prompt": "1.inputs.t"}}, "API format"),
        ({**OPTIONS, "output": "99"}, "node 99"),
    ],
)
def test_bad_options_are_refused_with_what_is_wrong_before_anything_is_sent(options, says):
    fake = FakeFal({})
    err = failure(lambda: provider(fake, options=options).submit(request()))
    assert err.kind == ErrorKind.REFUSED and says in err.message
    assert fake.sent == []


def test_a_reference_without_an_image_node_is_refused():
    options = {"workflow": WORKFLOW, "nodes": {"prompt": "6.inputs.text"}}
    req = request(references=(Reference(image_bytes(), "image/png"),))
    err = failure(lambda: build_prompt(options, req))
    assert err.kind == ErrorKind.PERMANENT


# --- submit and poll ----------------------------------------------------------------------


def test_submit_uploads_the_reference_and_queues_the_workflow():
    png = image_bytes()
    fake = FakeFal(
        {
            ("POST", f"{BASE}/upload/image"): reply(
                200, {"name": "nanoweb-ab.png", "subfolder": "", "type": "input"}
            ),
            ("POST", f"{BASE}/prompt"): reply(
                200, {"prompt_id": PID, "number": 3, "node_errors": {}}
            ),
        }
    )
    answer = provider(fake).submit(request(references=(Reference(png, "image/png"),)))
    assert isinstance(answer, Pending) and answer.job.id == PID and not answer.started
    upload, prompt = fake.sent
    assert b'name="image"; filename="nanoweb-' in upload.content and png in upload.content
    assert b'name="overwrite"' in upload.content
    body = json.loads(prompt.content)
    assert body["client_id"] == "nanoweb"
    assert body["prompt"]["10"]["inputs"]["image"] == "nanoweb-ab.png"
    assert all("authorization" not in r.headers for r in fake.sent)  # "none": no key


def test_a_real_key_goes_to_the_proxy_as_bearer():
    fake = FakeFal({("POST", f"{BASE}/prompt"): reply(200, {"prompt_id": PID})})
    provider(fake, key="proxy-token-0123456789").submit(request())
    assert fake.sent[0].headers["authorization"] == "Bearer proxy-token-0123456789"


def test_a_finished_prompt_s_image_is_fetched_from_view():
    png = image_bytes()
    fake = FakeFal(
        {
            ("GET", f"{BASE}/history/{PID}"): reply(200, history()),
            ("GET", f"{BASE}/view"): httpx.Response(200, content=png),
        }
    )
    answer = provider(fake).poll(UpstreamJob(PID))
    assert isinstance(answer, ImageResult) and answer.images[0].data == png
    view = fake.sent[-1].url
    assert view.params["filename"] == "ComfyUI_00001_.png" and view.params["type"] == "output"
    assert answer.response_id == PID


@pytest.mark.parametrize(
    ("q", "started", "position"),
    [(queue(running=[PID]), True, None), (queue(running=["x"], pending=["y", PID]), False, 1)],
)
def test_a_prompt_not_in_the_history_is_waiting_or_running(q, started, position):
    fake = FakeFal(
        {("GET", f"{BASE}/history/{PID}"): reply(200, {}), ("GET", f"{BASE}/queue"): reply(200, q)}
    )
    answer = provider(fake).poll(UpstreamJob(PID))
    assert isinstance(answer, Pending)
    assert (answer.started, answer.position) == (started, position)


def test_a_prompt_the_server_forgot_is_transient():
    fake = FakeFal(
        {
            ("GET", f"{BASE}/history/{PID}"): reply(200, {}),
            ("GET", f"{BASE}/queue"): reply(200, queue()),
        }
    )
    err = failure(lambda: provider(fake).poll(UpstreamJob(PID)))
    assert err.kind == ErrorKind.TRANSIENT and "restarted" in err.message


def test_saved_images_win_over_previews():
    outputs = {
        "12": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]},
        "9": {"images": [{"filename": "s.png", "subfolder": "x", "type": "output"}]},
    }
    assert output_images(outputs) == [{"filename": "s.png", "subfolder": "x", "type": "output"}]
    assert output_images(outputs, "12")[0]["filename"] == "p.png"


# --- failures -------------------------------------------------------------------------------


def error_message(exception_type: str, message: str) -> list:
    data = {
        "prompt_id": PID,
        "node_id": "3",
        "node_type": "KSampler",
        "exception_message": message,
        "exception_type": exception_type,
    }
    return [["execution_start", {}], ["execution_error", data]]


@pytest.mark.parametrize(
    ("entry", "kind"),
    [
        (
            history("error", {}, error_message("torch.OutOfMemoryError", "CUDA out of memory.")),
            ErrorKind.TRANSIENT,
        ),
        (
            history("error", {}, error_message("RuntimeError", "Could not detect model type")),
            ErrorKind.PERMANENT,
        ),
        (
            history("error", {}, [["execution_interrupted", {"prompt_id": PID}]]),
            ErrorKind.TRANSIENT,
        ),
        (history("success", {}), ErrorKind.NO_IMAGE),
    ],
)
def test_a_failed_run_is_classified_by_its_messages(entry, kind):
    fake = FakeFal({("GET", f"{BASE}/history/{PID}"): reply(200, entry)})
    err = failure(lambda: provider(fake).poll(UpstreamJob(PID)))
    assert err.kind == kind


def test_a_workflow_that_does_not_validate_says_which_node_and_why():
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {
            "4": {
                "errors": [
                    {
                        "type": "value_not_in_list",
                        "message": "Value not in list",
                        "details": "ckpt_name: 'v1-5.ckpt' not in ['sdxl.safetensors']",
                    }
                ],
                "dependent_outputs": ["9"],
                "class_type": "CheckpointLoaderSimple",
            }
        },
    }
    fake = FakeFal({("POST", f"{BASE}/prompt"): reply(400, body)})
    err = failure(lambda: provider(fake).submit(request()))
    assert err.kind == ErrorKind.PERMANENT and err.http_status == 400
    assert "CheckpointLoaderSimple 4: Value not in list: ckpt_name" in err.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (401, ErrorKind.KEY_INVALID),
        (404, ErrorKind.REFUSED),
        (429, ErrorKind.RATE_LIMITED),
        (413, ErrorKind.PERMANENT),
        (500, ErrorKind.TRANSIENT),
        (502, ErrorKind.TRANSIENT),
        (504, ErrorKind.SLOW),
    ],
)
def test_http_failures_are_classified(status, kind):
    assert classify_error(status, b"", {}, "submit").kind == kind


def test_an_old_server_s_string_error_is_read_too():
    err = classify_error(400, json.dumps({"error": "no prompt", "node_errors": []}), {}, "submit")
    assert "no prompt" in err.message


def test_an_unreachable_server_bills_nothing():
    def refuse(req):
        raise httpx.ConnectError("connection refused", request=req)

    err = failure(lambda: provider(refuse).submit(request()))
    assert err.kind == ErrorKind.TRANSIENT and not err.may_have_been_billed


def test_the_proxy_token_never_shows_in_errors():
    token = "proxy-SECRET-token-0123456789"
    fake = FakeFal({("POST", f"{BASE}/prompt"): reply(403, f"bad token {token}".encode())})
    err = failure(lambda: provider(fake, key=token).submit(request()))
    assert token not in err.message and token not in err.detail


# --- cancel and the key check -----------------------------------------------------------------


def test_cancel_deletes_a_pending_prompt():
    fake = FakeFal(
        {
            ("GET", f"{BASE}/queue"): reply(200, queue(running=["x"], pending=[PID])),
            ("POST", f"{BASE}/queue"): httpx.Response(200),
        }
    )
    assert provider(fake).cancel(UpstreamJob(PID)) is True
    assert json.loads(fake.sent[-1].content) == {"delete": [PID]}


def test_cancel_interrupts_only_this_running_prompt_and_says_it_was_late():
    fake = FakeFal(
        {
            ("GET", f"{BASE}/queue"): reply(200, queue(running=[PID])),
            ("POST", f"{BASE}/interrupt"): httpx.Response(200),
        }
    )
    assert provider(fake).cancel(UpstreamJob(PID)) is False
    assert json.loads(fake.sent[-1].content) == {"prompt_id": PID}


def test_cancel_never_interrupts_someone_else_s_prompt():
    fake = FakeFal({("GET", f"{BASE}/queue"): reply(200, queue(running=["other"]))})
    assert provider(fake).cancel(UpstreamJob(PID)) is False
    assert [r.method for r in fake.sent] == ["GET"]


def test_connection_names_the_nodes_the_server_lacks():
    def answer(req):
        if req.url.path == "/system_stats":
            return reply(200, {"system": {"comfyui_version": "0.3.68"}, "devices": []})
        cls = req.url.path.rsplit("/", 1)[-1]
        return reply(200, {} if cls == "LoadImage" else {cls: {"name": cls}})

    err = failure(lambda: provider(answer).test_connection())
    assert err.kind == ErrorKind.REFUSED and "LoadImage" in err.message
