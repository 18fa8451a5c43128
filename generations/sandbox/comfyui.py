"""A ComfyUI server for the sandbox, under ``/comfyui`` (a provider's base_url is
``{sandbox}/comfyui``; a real one is ``http://comfyui:8188``). Every route is served
under ``/api`` too, as ComfyUI does.

Wire facts relied on (github:comfyanonymous/ComfyUI server.py, script_examples/, and
main.py's ``prompt_worker`` as kept in forks of it; see generations/providers/comfyui.py):

* ``POST /prompt {"prompt": <API format>, "client_id"}`` → ``{"prompt_id", "number",
  "node_errors": {}}``; a workflow that does not validate → 400 ``{"error": {"type",
  "message", "details", "extra_info"}, "node_errors": {id: {"errors": […],
  "dependent_outputs", "class_type"}}}`` ("Prompt has no outputs", "Cannot execute
  because node X does not exist.", "Prompt outputs failed validation" with "Value 20000
  bigger than max of 16384: width" and LoadImage's "Invalid image file: name").
* ``POST /upload/image`` (multipart ``image``, ``type``, ``subfolder``, ``overwrite``) →
  ``{"name", "subfolder", "type"}``; ``GET /view?filename=&subfolder=&type=``.
* ``GET /history/{id}`` → ``{}`` until done, then ``{id: {"prompt", "outputs": {node:
  {"images": [{"filename", "subfolder", "type"}]}}, "status": {"status_str",
  "completed", "messages"}, "meta": {}}}``; ``GET /queue`` → ``{"queue_running",
  "queue_pending"}`` of ``[number, prompt_id, prompt, extra_data, outputs]``.
* ``POST /queue {"delete": [ids]}`` drops pending prompts; ``POST /interrupt
  {"prompt_id"}`` stops the named prompt only if it runs (none: whatever runs); an
  interrupted prompt's history is ``status_str`` "error", ``completed`` false, with an
  ``execution_interrupted`` message. ``GET /system_stats``, ``GET /object_info/{class}``
  (``{}`` for an unknown class).

The sandbox's own choices: the node classes it knows (core ones: checkpoint, CLIP, latent,
sampler, VAE, LoadImage, SaveImage, PreviewImage, Flux's loaders), what it renders (the
text of the CLIPTextEncode feeding a KSampler's ``positive``, else the first text input; at
the EmptyLatentImage's size, else the LoadImage's, else 512×512), and a 401 when a Bearer
token in ``invalid_keys`` is sent (a proxy in front; ComfyUI itself has no keys). Jobs run
``SandboxConfig.queue_concurrency`` at a time (ComfyUI runs one: set it to 1 to see a real
queue). ``POST /sandbox/restart`` forgets every job and file, as a restarted server does.

Fault classes: unavailable → 503 and internal → 500 at /prompt (a proxy in front while
ComfyUI restarts); deadline → 504; timeout → no answer; malformed → the finished history is
unreadable JSON; truncated → the image file is cut short; no_image, text_only,
prompt_block, image_safety → the prompt succeeds without images; rate_limit, daily_quota,
out_of_credit, capacity, saturated → it fails with CUDA out of memory; region → it fails
with a checkpoint error; slow_queue → it runs ``slow_queue_seconds`` longer.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

from generations.sandbox import media
from generations.sandbox.parse import BadRequest, multipart
from generations.sandbox.render import render_image
from generations.sandbox.state import Reply, Request

VERSION = "0.3.68"
MAX_RESOLUTION = 16384  # nodes.py MAX_RESOLUTION
KNOWN_NODES = frozenset(
    {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "EmptySD3LatentImage",
        "KSampler",
        "KSamplerAdvanced",
        "VAEDecode",
        "VAEEncode",
        "VAELoader",
        "UNETLoader",
        "DualCLIPLoader",
        "FluxGuidance",
        "LoadImage",
        "SaveImage",
        "PreviewImage",
    }
)
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage"})
LATENT_NODES = frozenset({"EmptyLatentImage", "EmptySD3LatentImage"})
HISTORY_PATH = re.compile(r"^/history/(?P<id>[\w-]+)$")
OBJECT_PATH = re.compile(r"^/object_info/(?P<cls>\w+)$")
OOM = (
    "torch.OutOfMemoryError",
    "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 23.65 GiB",
)
BAD_CHECKPOINT = ("RuntimeError", "ERROR: Could not detect model type of: sandbox.safetensors")


class _Invalid(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__("invalid prompt")
        self.body = body


class ComfyUIAPI:
    """The /comfyui routes; prompts are jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping
        self._lock = threading.Lock()
        self._files: dict[tuple[str, str, str], str] = {}  # (type, subfolder, name) → store
        self._prompts: list[str] = []  # prompt ids this server knows, in submission order
        self._number = 0

    def handle(self, req: Request) -> Reply:
        path = req.path.removeprefix("/api") if req.path.startswith("/api/") else req.path
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() in self.config.invalid_keys:
            return Reply(401, b"401: Unauthorized", "api_key_invalid", content_type="text/plain")
        routes = {
            ("POST", "/prompt"): self._prompt,
            ("POST", "/upload/image"): self._upload,
            ("GET", "/queue"): self._queue,
            ("POST", "/queue"): self._delete,
            ("POST", "/interrupt"): self._interrupt,
            ("GET", "/view"): self._view,
            ("GET", "/system_stats"): self._stats,
            ("POST", "/sandbox/restart"): self._restart,
        }
        route = routes.get((req.method, path))
        if route is not None:
            return route(req)
        if req.method == "GET" and (found := HISTORY_PATH.match(path)):
            return self._history(found["id"])
        if req.method == "GET" and (found := OBJECT_PATH.match(path)):
            known = found["cls"] in KNOWN_NODES
            return Reply.of(200, {found["cls"]: _node_info(found["cls"])} if known else {})
        return Reply(404, b"404: Not Found", "not_found", content_type="text/plain")

    # --- submitting -------------------------------------------------------------------

    def _prompt(self, req: Request) -> Reply:
        self.state.count_request()
        try:
            body = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError):
            return Reply(400, b"400: Bad Request", "invalid", content_type="text/plain")
        workflow = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(workflow, dict):
            return Reply.of(400, _error("invalid_prompt", "No prompt provided", ""), "invalid")
        try:
            width, height, text = self._validate(workflow)
            fault = self.state.fault_for(text)
        except _Invalid as exc:
            return Reply.of(400, exc.body, "invalid")
        except BadRequest as exc:
            return Reply.of(400, _error("invalid_prompt", str(exc), ""), "invalid")
        match fault:
            case "unavailable":
                return Reply(503, b"503 Service Unavailable", fault, content_type="text/plain")
            case "internal":
                return Reply(500, b"500 Internal Server Error", fault, content_type="text/plain")
            case "deadline":
                return Reply(504, b"504 Gateway Time-out", fault, content_type="text/plain")
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
        prompt_id = str(uuid.uuid4())
        with self._lock:
            number = self._number
            self._number += 1
            self._prompts.append(prompt_id)
        data = {
            "workflow": workflow,
            "number": number,
            "size": (width, height),
            "client_id": body.get("client_id"),
        }
        self.engine.submit(("comfyui", "server"), prompt_id, text, fault, data=data)
        return Reply.of(200, {"prompt_id": prompt_id, "number": number, "node_errors": {}})

    def _validate(self, workflow: dict) -> tuple[int, int, str]:
        """Size and text of a workflow ComfyUI would run; _Invalid as it would refuse."""
        for node_id, node in workflow.items():
            cls = node.get("class_type") if isinstance(node, dict) else None
            if cls not in KNOWN_NODES:
                raise _Invalid(
                    _error(
                        "invalid_prompt",
                        f"Cannot execute because node {cls} does not exist.",
                        f"Node ID '#{node_id}'",
                    )
                )
        if not any(n["class_type"] in OUTPUT_NODES for n in workflow.values()):
            raise _Invalid(_error("prompt_no_outputs", "Prompt has no outputs", ""))
        node_errors: dict = {}
        width, height = 512, 512
        for node_id, node in workflow.items():
            inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
            problems = []
            if node["class_type"] in LATENT_NODES:
                for name in ("width", "height"):
                    value = inputs.get(name)
                    if not isinstance(value, int) or value < 16:
                        problems.append(f"Value {value} smaller than min of 16: {name}")
                    elif value > MAX_RESOLUTION:
                        problems.append(
                            f"Value {value} bigger than max of {MAX_RESOLUTION}: {name}"
                        )
                if not problems:
                    width, height = inputs["width"], inputs["height"]
            if node["class_type"] == "LoadImage":
                key = ("input", *_split(str(inputs.get("image", ""))))
                with self._lock:
                    stored = self._files.get(key)
                if stored is None:
                    problems.append(f"Invalid image file: {inputs.get('image')}")
                elif not any(n["class_type"] in LATENT_NODES for n in workflow.values()):
                    found = self.engine.files.get(stored)
                    if found:
                        width, height = media.image_size(found[0])
            if problems:
                node_errors[node_id] = {
                    "errors": [
                        {"type": "value_invalid", "message": "Value invalid", "details": p}
                        for p in problems
                    ],
                    "dependent_outputs": [],
                    "class_type": node["class_type"],
                }
        if node_errors:
            body = _error(
                "prompt_outputs_failed_validation", "Prompt outputs failed validation", ""
            )
            body["node_errors"] = node_errors
            raise _Invalid(body)
        return width, height, _positive_text(workflow)

    def _upload(self, req: Request) -> Reply:
        parts = multipart(req.body or b"", req.headers.get("Content-Type") or "")
        fields = {name: payload.decode("utf-8", "replace") for name, _, payload in parts}
        image = next(((fn, data) for name, fn, data in parts if name == "image" and fn), None)
        if image is None:
            return Reply(400, b"400: Bad Request", "invalid", content_type="text/plain")
        folder_type = fields.get("type") or "input"
        subfolder = fields.get("subfolder") or ""
        filename, data = image
        with self._lock:
            if fields.get("overwrite") not in ("true", "1"):
                stem, dot, ext = filename.rpartition(".")
                i = 1
                while (folder_type, subfolder, filename) in self._files:
                    filename = f"{stem} ({i}){dot}{ext}"
                    i += 1
        stored = self.engine.files.put(data, "bin", "application/octet-stream")
        with self._lock:
            self._files[(folder_type, subfolder, filename)] = stored
        return Reply.of(200, {"name": filename, "subfolder": subfolder, "type": folder_type})

    # --- the queue --------------------------------------------------------------------

    def _jobs(self) -> list:
        with self._lock:
            ids = list(self._prompts)
        return [job for job in map(self.engine.get, ids) if job is not None]

    def _queue(self, req: Request) -> Reply:
        now = time.monotonic()
        running, pending = [], []
        for job in self._jobs():
            if job.cancelled_at is not None or now >= job.end:
                continue
            item = [job.data["number"], job.id, job.data["workflow"], {}, []]
            (running if now >= job.start else pending).append(item)
        return Reply.of(200, {"queue_running": running, "queue_pending": pending})

    def _delete(self, req: Request) -> Reply:
        try:
            body = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return Reply(500, b"500 Internal Server Error", "invalid", content_type="text/plain")
        now = time.monotonic()
        doomed = set(body.get("delete") or []) if isinstance(body, dict) else set()
        for job in self._jobs():
            if job.id in doomed and job.cancelled_at is None and now < job.start:
                self.engine.cancel(job, now)
                job.data["deleted"] = True
        if isinstance(body, dict) and body.get("clear"):
            for job in self._jobs():
                if job.cancelled_at is None and now < job.start:
                    self.engine.cancel(job, now)
                    job.data["deleted"] = True
        return Reply(200, b"", "ok", content_type="text/plain")

    def _interrupt(self, req: Request) -> Reply:
        try:
            body = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = {}
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        now = time.monotonic()
        for job in self._jobs():
            running = job.cancelled_at is None and job.start <= now < job.end
            if running and (wanted is None or wanted == job.id):
                self.engine.cancel(job, now)
        return Reply(200, b"", "ok", content_type="text/plain")

    def _restart(self, req: Request) -> Reply:
        with self._lock:
            self._prompts.clear()
            self._files.clear()
        return Reply.of(200, {"restarted": True})

    # --- results ----------------------------------------------------------------------

    def _history(self, prompt_id: str) -> Reply:
        self.engine.poll()
        with self._lock:
            known = prompt_id in self._prompts
        job = self.engine.get(prompt_id) if known else None
        now = time.monotonic()
        if job is None or job.data.get("deleted"):
            return Reply.of(200, {})
        interrupted = job.cancelled_at is not None
        if not interrupted and now < job.end:
            return Reply.of(200, {})
        entry = self._entry(job, interrupted)
        reply = Reply.of(200, {prompt_id: entry})
        if job.fault == "malformed" and not interrupted:
            return Reply(200, media.cut_json(reply.body), "malformed")
        return reply

    def _entry(self, job, interrupted: bool) -> dict:
        start = {"prompt_id": job.id, "timestamp": int(job.wall(job.start) * 1000)}
        messages: list = [["execution_start", start], ["execution_cached", {"nodes": []}]]
        outputs: dict = {}
        status_str, completed = "success", True
        error = None
        if interrupted:
            messages.append(["execution_interrupted", {"prompt_id": job.id, "executed": []}])
            status_str, completed = "error", False
        else:
            match job.fault:
                case "rate_limit" | "daily_quota" | "out_of_credit" | "capacity" | "saturated":
                    error = OOM
                case "region":
                    error = BAD_CHECKPOINT
                case "no_image" | "text_only" | "prompt_block" | "image_safety":
                    outputs = {}
                case _:
                    outputs = job.outcome(self._render)
        if error is not None:
            exception_type, message = error
            sampler = next(
                (i for i, n in job.data["workflow"].items() if "Sampler" in n["class_type"]), "?"
            )
            messages.append(
                [
                    "execution_error",
                    {
                        "prompt_id": job.id,
                        "node_id": sampler,
                        "node_type": job.data["workflow"].get(sampler, {}).get("class_type"),
                        "executed": [],
                        "exception_message": message,
                        "exception_type": exception_type,
                        "traceback": ['  File "execution.py", line 496, in execute\n'],
                        "current_inputs": {},
                        "current_outputs": {},
                    },
                ]
            )
            status_str, completed = "error", False
        elif completed:
            messages.append(["execution_success", start])
        return {
            "prompt": [job.data["number"], job.id, job.data["workflow"], {}, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status_str, "completed": completed, "messages": messages},
            "meta": {node: {"node_id": node, "display_node": node} for node in outputs},
        }

    def _render(self, job) -> dict:
        width, height = job.data["size"]
        outputs = {}
        for node_id, node in job.data["workflow"].items():
            if node["class_type"] not in OUTPUT_NODES:
                continue
            image = render_image(job.prompt, width, height, "PNG")
            if job.fault == "truncated":
                image = media.cut(image)
            saved = node["class_type"] == "SaveImage"
            prefix = str(node.get("inputs", {}).get("filename_prefix") or "ComfyUI")
            folder = "output" if saved else "temp"
            name = f"{prefix}_{job.data['number'] + 1:05}_.png"
            stored = self.engine.store(image, "png", "image/png", job.end)
            with self._lock:
                self._files[(folder, "", name)] = stored
            outputs[node_id] = {"images": [{"filename": name, "subfolder": "", "type": folder}]}
        return outputs

    def _view(self, req: Request) -> Reply:
        name = req.param("filename")
        if not name or name.startswith("/") or ".." in name:
            return Reply(400, b"400: Bad Request", "invalid", content_type="text/plain")
        key = (req.param("type") or "output", req.param("subfolder"), name)
        with self._lock:
            stored = self._files.get(key)
        found = self.engine.files.get(stored) if stored else None
        if found is None:
            return Reply(404, b"404: Not Found", "not_found", content_type="text/plain")
        data, _type = found
        content_type = "image/png" if data.startswith(b"\x89PNG") else "application/octet-stream"
        return Reply(200, data, "file", content_type=content_type)

    def _stats(self, req: Request) -> Reply:
        return Reply.of(
            200,
            {
                "system": {
                    "os": "posix",
                    "ram_total": 68_719_476_736,
                    "ram_free": 51_539_607_552,
                    "comfyui_version": VERSION,
                    "python_version": "3.12.3",
                    "pytorch_version": "2.8.0+cu128",
                    "embedded_python": False,
                    "argv": ["main.py", "--listen"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 4090 (sandbox)",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 25_393_692_672,
                        "vram_free": 24_000_000_000,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            },
        )


def _error(kind: str, message: str, details: str) -> dict:
    return {
        "error": {"type": kind, "message": message, "details": details, "extra_info": {}},
        "node_errors": {},
    }


def _split(name: str) -> tuple[str, str]:
    """``subfolder/name`` → (subfolder, name)."""
    folder, _, leaf = name.rpartition("/")
    return folder, leaf


def _positive_text(workflow: dict) -> str:
    """The text of the CLIPTextEncode a sampler takes as ``positive``, else the first text."""
    for node in workflow.values():
        link = node.get("inputs", {}).get("positive") if "Sampler" in node["class_type"] else None
        if isinstance(link, list) and link and str(link[0]) in workflow:
            text = workflow[str(link[0])].get("inputs", {}).get("text")
            if isinstance(text, str):
                return text
    return next(
        (
            n["inputs"]["text"]
            for n in workflow.values()
            if isinstance(n.get("inputs", {}).get("text"), str)
        ),
        "",
    )


def _node_info(cls: str) -> dict:
    return {
        "input": {"required": {}},
        "output": [],
        "name": cls,
        "display_name": cls,
        "description": "",
        "python_module": "nodes",
        "category": "sandbox",
        "output_node": cls in OUTPUT_NODES,
    }
