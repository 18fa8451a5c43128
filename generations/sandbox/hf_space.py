"""A Hugging Face Space (a Gradio 5 app) for the sandbox, under ``/hf`` (a provider's
base_url is ``{sandbox}/hf``; a real one is ``https://owner-name.hf.space``).

Wire facts relied on (github:gradio-app/gradio routes.py, queueing.py, utils.py and the
curl guide; see generations/providers/hf_space.py for each):

* ``POST /gradio_api/call/{api_name} {"data": [...]}`` → ``{"event_id"}``;
  ``GET /gradio_api/call/{api_name}/{event_id}`` → ``text/event-stream`` of
  ``event: heartbeat`` (``data: null``), ``event: complete`` (``data: [outputs]``) or
  ``event: error`` (``data: {"error", "title", "duration", "visible"}``).
* ``POST /gradio_api/upload`` (multipart ``files``) → ``["/tmp/gradio/…/name"]``; inputs
  take ``{"path", "meta": {"_type": "gradio.FileData"}}``; outputs are FileData with
  ``path`` and ``url`` = ``{app}/gradio_api/file={path}``, served there.
* ``GET /gradio_api/info`` → ``{"named_endpoints": {"/infer": {"parameters": [...],
  "returns": [...]}}, "unnamed_endpoints": {}}``.
* An api_name the app lacks is an unhandled error in Gradio: 500 "Internal Server Error".

The Space it plays has two endpoints shaped like FLUX.1-schnell's: ``/infer`` (prompt,
seed, randomize_seed, width, height, num_inference_steps) → [image, seed], and ``/edit``
(image, prompt, seed, width, height) → [image, seed]; images come back as WebP. Its own
choices: the wording for a wrong argument count, the 503 page of a sleeping Space, the
safety refusal's text, and the 401 for a token in ``invalid_keys`` (a private Space).

Fault classes: rate_limit → 429 at the call (Retry-After 2); daily_quota → an error event
"You have exceeded your GPU quota (60s requested vs. 12s left). Try again in H:MM:SS"
(until the next UTC midnight), out_of_credit → the same without a wait ("Create a free
account to get more usage quota."); capacity, saturated → "No GPU is currently available
for you after 60s"; unavailable → 503 (asleep), internal → 500, deadline → 504, timeout →
no answer, at the call; prompt_block, image_safety → an error event naming NSFW content;
no_image, text_only → complete with a null image; region → an error event
"ZeroGPU illegal duration"; malformed → a complete event that is not JSON; truncated →
the image file is cut short; slow_queue → the stream waits ``slow_queue_seconds`` longer
(with heartbeats).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from generations.sandbox import media
from generations.sandbox.parse import BadRequest, multipart
from generations.sandbox.render import render_image
from generations.sandbox.state import Reply, Request

PREFIX = "/gradio_api"
CALL_PATH = re.compile(rf"^{PREFIX}/call/(?P<api>[\w-]+)/?$")
STREAM_PATH = re.compile(rf"^{PREFIX}/call/(?P<api>[\w-]+)/(?P<event>[\w-]+)$")
FILE_PATH = f"{PREFIX}/file="


def _param(label: str, kind: str, default, component: str) -> dict:
    return {
        "label": label,
        "parameter_name": label.lower().replace(" ", "_"),
        "parameter_has_default": True,
        "parameter_default": default,
        "type": {"type": kind},
        "python_type": {"type": kind, "description": ""},
        "component": component,
        "example_input": default,
    }


IMAGE_PARAM = {
    "label": "Input image",
    "parameter_name": "image",
    "parameter_has_default": False,
    "parameter_default": None,
    "type": {"$ref": "#/$defs/ImageData"},
    "python_type": {"type": "filepath", "description": ""},
    "component": "Image",
}
ENDPOINTS = {
    "infer": {
        "parameters": [
            _param("Prompt", "string", "", "Textbox"),
            _param("Seed", "number", 0, "Slider"),
            _param("Randomize seed", "boolean", True, "Checkbox"),
            _param("Width", "number", 1024, "Slider"),
            _param("Height", "number", 1024, "Slider"),
            _param("Number of inference steps", "number", 4, "Slider"),
        ],
        "returns": [
            {"label": "Result", "type": {"type": "string"}, "component": "Image"},
            {"label": "Seed", "type": {"type": "number"}, "component": "Slider"},
        ],
    },
    "edit": {
        "parameters": [
            IMAGE_PARAM,
            _param("Prompt", "string", "", "Textbox"),
            _param("Seed", "number", 0, "Slider"),
            _param("Width", "number", 1024, "Slider"),
            _param("Height", "number", 1024, "Slider"),
        ],
        "returns": [
            {"label": "Result", "type": {"type": "string"}, "component": "Image"},
            {"label": "Seed", "type": {"type": "number"}, "component": "Slider"},
        ],
    },
}
# Which position holds what, per endpoint.
FIELDS = {
    "infer": {"prompt": 0, "seed": 1, "width": 3, "height": 4},
    "edit": {"image": 0, "prompt": 1, "seed": 2, "width": 3, "height": 4},
}
SLEEPING_PAGE = b"<!DOCTYPE html><html><body><h1>This Space is starting.</h1></body></html>"
NSFW = "NSFW content detected. Please try a different prompt."


class SpaceAPI:
    """The /hf routes: one Gradio app, its calls as jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping
        self._lock = threading.Lock()
        self._uploads: dict[str, str] = {}  # server path → file store name

    def handle(self, req: Request) -> Reply:
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip() in self.config.invalid_keys:
            body = {"error": "Invalid credentials in Authorization header"}
            return Reply.of(401, body, "api_key_invalid")
        if req.method == "GET" and req.path == f"{PREFIX}/info":
            return Reply.of(200, {"named_endpoints": _named(), "unnamed_endpoints": {}})
        if req.method == "POST" and req.path == f"{PREFIX}/upload":
            return self._upload(req)
        if req.method == "GET" and req.path.startswith(FILE_PATH):
            return self._file(req.path.removeprefix(FILE_PATH))
        if req.method == "POST" and (found := CALL_PATH.match(req.path)):
            return self._call(req, found["api"], token.strip())
        if req.method == "GET" and (found := STREAM_PATH.match(req.path)):
            return self._stream(found["api"], found["event"])
        return Reply.of(404, {"detail": "Not Found"}, "not_found")

    # --- the call ---------------------------------------------------------------------

    def _call(self, req: Request, api: str, token: str) -> Reply:
        self.state.count_request()
        if api not in ENDPOINTS:
            return _plain(500, b"Internal Server Error", "unknown_api")
        try:
            body = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError):
            return Reply.of(
                422, {"detail": [{"type": "json_invalid", "msg": "JSON decode error"}]}, "invalid"
            )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            detail = [{"type": "missing", "loc": ["body", "data"], "msg": "Field required"}]
            return Reply.of(422, {"detail": detail}, "invalid")
        fields = FIELDS[api]
        prompt = data[fields["prompt"]] if len(data) > fields["prompt"] else ""
        try:
            fault = self.state.fault_for(str(prompt or ""))
        except BadRequest as exc:
            return Reply.of(400, {"detail": str(exc)}, "invalid")
        match fault:
            case "rate_limit":
                return _plain(429, b"Too Many Requests", fault, (("Retry-After", "2"),))
            case "unavailable":
                return Reply(503, SLEEPING_PAGE, fault, content_type="text/html")
            case "internal":
                return _plain(500, b"Internal Server Error", fault)
            case "deadline":
                return _plain(504, b"Gateway Timeout", fault)
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
        event_id = uuid.uuid4().hex
        job_data = {"api": api, "data": data, "origin": req.origin}
        lane = ("hf_space", token or "anonymous")
        self.engine.submit(lane, event_id, str(prompt or ""), fault, data=job_data)
        return Reply.of(200, {"event_id": event_id})

    def _stream(self, api: str, event_id: str) -> Reply:
        job = self.engine.get(event_id)
        if job is None or job.data.get("api") != api:
            return Reply.of(404, {"detail": "Not Found"}, "not_found")
        self.engine.poll()
        waited = max(0.0, job.end - time.monotonic())
        self.stopping.wait(waited)
        events = [("heartbeat", "null")] if waited > 0 else []
        event, data, outcome = self._outcome(job)
        events.append((event, data))
        body = "".join(f"event: {name}\ndata: {payload}\n\n" for name, payload in events)
        return Reply(200, body.encode(), outcome, content_type="text/event-stream; charset=utf-8")

    def _outcome(self, job) -> tuple[str, str, str]:
        """The final event (name, data) and the outcome for the log."""
        match job.fault:
            case "daily_quota":
                return "error", _quota_error(self._until_midnight()), job.fault
            case "out_of_credit":
                return "error", _quota_error(None), job.fault
            case "capacity" | "saturated":
                said = "No GPU is currently available for you after 60s"
                return "error", json.dumps({"error": said, "title": "ZeroGPU"}), job.fault
            case "region":
                said = "ZeroGPU illegal duration (120s requested vs. 60s max)."
                return "error", json.dumps({"error": said, "title": "ZeroGPU"}), job.fault
            case "prompt_block" | "image_safety":
                return "error", json.dumps({"error": NSFW, "title": "Error"}), job.fault
        problem = self._arguments_problem(job)
        if problem:
            return "error", json.dumps({"error": problem, "title": "Error"}), "invalid"
        seed = job.data["data"][FIELDS[job.data["api"]]["seed"]]
        if job.fault in ("no_image", "text_only"):
            return "complete", json.dumps([None, seed]), job.fault
        file = job.outcome(self._render)
        if job.fault == "malformed":
            return "complete", json.dumps([file, seed])[:40], job.fault
        return "complete", json.dumps([file, seed]), "ok"

    def _arguments_problem(self, job) -> str:
        api, data = job.data["api"], job.data["data"]
        wanted = len(ENDPOINTS[api]["parameters"])
        if len(data) != wanted:
            return (
                "An event handler didn't receive enough input values "
                f"(needed: {wanted}, got: {len(data)})."
            )
        fields = FIELDS[api]
        for name in ("width", "height"):
            value = data[fields[name]]
            if not isinstance(value, int | float) or not 256 <= value <= 2048:
                return f"Value {value} is out of range for {name} (256 to 2048)."
        if "image" in fields and self._input_file(data[fields["image"]]) is None:
            return "Please upload an input image."
        return ""

    def _input_file(self, value) -> bytes | None:
        path = value.get("path") if isinstance(value, dict) else None
        with self._lock:
            stored = self._uploads.get(path or "")
        found = self.engine.files.get(stored) if stored else None
        return found[0] if found else None

    def _render(self, job) -> dict:
        fields, data = FIELDS[job.data["api"]], job.data["data"]
        width, height = int(data[fields["width"]]), int(data[fields["height"]])
        image = render_image(job.prompt, width, height, "WEBP")
        if job.fault == "truncated":
            image = media.cut(image)
        stored = self.engine.store(image, "webp", "image/webp", job.end)
        path = f"/tmp/gradio/{uuid.uuid4().hex}/image.webp"
        with self._lock:
            self._uploads[path] = stored
        return {
            "path": path,
            "url": f"{job.data['origin']}/hf{FILE_PATH}{path}",
            "size": None,
            "orig_name": "image.webp",
            "mime_type": None,
            "is_stream": False,
            "meta": {"_type": "gradio.FileData"},
        }

    def _until_midnight(self) -> float:
        now = datetime.now(UTC)
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return (midnight - now).total_seconds()

    # --- files ------------------------------------------------------------------------

    def _upload(self, req: Request) -> Reply:
        parts = multipart(req.body or b"", req.headers.get("Content-Type") or "")
        files = [(fn, data) for name, fn, data in parts if name == "files" and fn]
        if not files:
            return _plain(400, b"No files were uploaded.", "invalid")
        paths = []
        for filename, data in files:
            stored = self.engine.files.put(data, "bin", "application/octet-stream")
            path = f"/tmp/gradio/{uuid.uuid4().hex}/{filename}"
            with self._lock:
                self._uploads[path] = stored
            paths.append(path)
        return Reply.of(200, paths)

    def _file(self, path: str) -> Reply:
        with self._lock:
            stored = self._uploads.get(path)
        found = self.engine.files.get(stored) if stored else None
        if found is None:
            return Reply.of(404, {"detail": "File not found"}, "not_found")
        data = found[0]
        kind = "image/webp" if data[8:12] == b"WEBP" else "application/octet-stream"
        return Reply(200, data, "file", content_type=kind)


def _named() -> dict:
    return {f"/{name}": endpoint for name, endpoint in ENDPOINTS.items()}


def _plain(status: int, body: bytes, outcome: str, headers=()) -> Reply:
    return Reply(status, body, outcome, headers=tuple(headers), content_type="text/plain")


def _quota_error(wait: float | None) -> str:
    said = "You have exceeded your GPU quota (60s requested vs. 12s left)."
    if wait is None:
        said += " Create a free account to get more usage quota."
    else:
        seconds = max(1, int(wait))
        said += f" Try again in {seconds // 3600}:{seconds % 3600 // 60:02}:{seconds % 60:02}"
    return json.dumps({"error": said, "title": "ZeroGPU quota exceeded", "visible": True})
