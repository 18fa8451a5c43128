"""Higgsfield's platform API for the sandbox, under ``/higgsfield`` (a provider's base_url
is ``{sandbox}/higgsfield``; the real one is ``https://platform.higgsfield.ai``).

Wire facts relied on, and where they come from (docs.higgsfield.ai, read late 2026, and
the official SDKs github:higgsfield-ai/higgsfield-client and higgsfield-ai/higgsfield-js):

* ``Authorization: Key {KEY_ID}:{KEY_SECRET}`` (the legacy ``hf-api-key`` and
  ``hf-secret`` headers are accepted too); missing or wrong: 401 ``{"detail": "Invalid
  credentials"}`` (/docs/authentication).
* ``POST /{model_id}`` (``?hf_webhook=URL``) → ``{status: "queued", request_id,
  status_url, cancel_url}``; ``GET /requests/{id}/status`` → the same with the current
  status, ``images: [{url}]`` once ``completed``, ``error`` when ``failed``; statuses
  queued, in_progress, completed, failed, nsfw, canceled (/docs/concepts/requests,
  /how-to/introduction; the SDKs' StatusEnum). ``POST /requests/{id}/cancel``: 202 while
  queued, else 400 (/how-to/introduction). Webhooks: a POST of the final status body for
  completed, failed and nsfw (/how-to/webhooks); no signature is described there, so none
  is sent.
* ``Idempotency-Key`` (1–255 visible ASCII): the same key with the same endpoint, body
  and webhook returns the original request without creating another; with other
  parameters 422; a request refused before acceptance does not consume the key
  (/docs/concepts/idempotency, /docs/api-reference/headers). Object key order does not
  matter: bodies are compared as parsed JSON.
* Above the account's concurrency requests wait ``queued``; the queue is capped at a
  multiple of the concurrency, beyond it 429 ``"code": "account_queue_full"`` with the
  queue ``limit`` and ``Retry-After``, nothing created (/docs/enterprise/capacity). 403 is
  "Insufficient credits", 404 "Request or model not found for this account", 422 body
  validation, 423 "Model is temporarily blocked" (/docs/concepts/errors). Every answer
  carries ``X-Correlation-ID``.

The models are the sandbox's own, since Higgsfield's schemas differ per model and are
being redesigned: ``higgsfield-ai/soul/standard`` (the docs' example: ``prompt``,
``aspect_ratio``, ``resolution`` 720p/1080p) and ``sandbox/nano-banana-pro`` (``prompt``,
``aspect_ratio``, ``resolution`` 1k/2k/4k, ``input_images`` as ``[{type: "image_url",
image_url}]``, up to 14, data URIs or the sandbox's own /files). Other fields are
ignored, a missing required one is FastAPI's 422.

Not confirmed, the sandbox's own choices: the wording of the 403, 404, 422 (mismatch),
423 and 5xx bodies, the 429 body beyond its documented ``code`` and ``limit``
(``detail`` text), the queue cap (``QUEUE_MULTIPLE`` × ``SandboxConfig.queue_concurrency``
waiting requests per key), the ``failed`` error texts, and that a completed request's
images are PNG files on the sandbox's /files.

Fault classes take Higgsfield's forms: out_of_credit → 403 at submit; rate_limit and
daily_quota → 429 ``account_queue_full``; unavailable/saturated → 503, internal → 500 at
submit; timeout → no answer at submit; region → 423; prompt_block/image_safety → ``nsfw``;
no_image/text_only → ``completed`` with no images; deadline/capacity → ``failed``;
malformed → the finished status is unreadable JSON; truncated → the image file is cut
short; slow_queue → the request runs ``slow_queue_seconds`` longer.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass

from generations.sandbox import media
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import render_image
from generations.sandbox.state import Reply, Request

STATUS_PATH = re.compile(r"^/requests/(?P<id>[^/]+)/(?P<what>status|cancel)$")
QUEUE_MULTIPLE = 2  # waiting requests per key allowed: this many times the concurrency
THROTTLE_WAIT = 2  # seconds an injected 429 asks for
MAX_REFERENCES = 14
KEY_CHARS = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class Model:
    resolutions: dict[str, int]  # value → the short side in pixels
    references: str = ""  # the field taking input images, "" for none
    ratios: tuple[str, ...] = ("1:1", "3:4", "4:3", "2:3", "3:2", "9:16", "16:9", "21:9")


MODELS = {
    "higgsfield-ai/soul/standard": Model({"720p": 720, "1080p": 1080}),
    "sandbox/nano-banana-pro": Model(
        {"1k": 1024, "2k": 2048, "4k": 4096},
        references="input_images",
        ratios=("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"),
    ),
}


def _cid() -> tuple[tuple[str, str], ...]:
    return (("X-Correlation-ID", str(uuid.uuid4())),)


def detail_reply(status: int, detail, outcome: str, headers=(), **extra) -> Reply:
    return Reply.of(status, {"detail": detail, **extra}, outcome, tuple(headers) + _cid())


def _missing(name: str) -> dict:
    return {"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None}


def _enum(name: str, value, allowed) -> dict:
    listed = ", ".join(f"'{a}'" for a in allowed)
    return {
        "type": "enum",
        "loc": ["body", name],
        "msg": f"Input should be {listed}",
        "input": value if not isinstance(value, str) else value[:200],
    }


def pixels(ratio: str, short: int) -> tuple[int, int]:
    """width × height of ``ratio`` whose short side is ``short`` (multiples of 8)."""
    w, h = (int(n) for n in ratio.split(":"))
    scale = short / min(w, h)
    return (round(w * scale / 8) * 8, round(h * scale / 8) * 8)


class HiggsfieldAPI:
    """The /higgsfield routes; requests are jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping
        self._keys: dict[tuple[str, str], tuple[str, object]] = {}  # (key, idem) → (id, what)
        self._requests: dict[str, list[str]] = {}  # key → ids of requests perhaps waiting
        self._lock = threading.Lock()  # one submit at a time decides on keys and the queue

    def handle(self, req: Request) -> Reply:
        key = self._key_of(req)
        if not key or key in self.config.invalid_keys:
            return detail_reply(401, "Invalid credentials", "api_key_invalid")
        found = STATUS_PATH.match(req.path)
        if found:
            job = self.engine.get(found["id"])
            if job is None or job.lane != ("higgsfield", key):
                return detail_reply(404, "Request not found", "not_found")
            if found["what"] == "status" and req.method == "GET":
                self.engine.poll()
                return self._status(job)
            if found["what"] == "cancel" and req.method == "POST":
                return self._cancel(job)
            return detail_reply(405, "Method Not Allowed", "not_found")
        model_id = req.path.strip("/")
        if req.method == "POST" and model_id in MODELS:
            return self._submit(req, key, model_id)
        return detail_reply(404, "Model not found", "not_found")

    @staticmethod
    def _key_of(req: Request) -> str:
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "key" and ":" in token:
            return token.strip()
        key, secret = req.headers.get("hf-api-key"), req.headers.get("hf-secret")
        return f"{key}:{secret}" if key and secret else ""

    # --- submit ---------------------------------------------------------------------

    def _submit(self, req: Request, key: str, model_id: str) -> Reply:
        self.state.count_request()
        try:
            body = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            item = {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}
            return detail_reply(422, [item], "invalid")
        webhook = req.param("hf_webhook")
        idem = req.headers.get("Idempotency-Key")
        if idem is not None and not KEY_CHARS.match(idem):
            item = {"type": "value_error", "loc": ["header", "Idempotency-Key"]}
            item["msg"] = "Idempotency-Key must be 1-255 visible ASCII characters"
            return detail_reply(422, [item], "invalid")
        with self._lock:
            return self._accept(req, key, model_id, body, webhook, idem)

    def _accept(self, req: Request, key: str, model_id: str, body: dict, webhook, idem):
        what = (model_id, body, webhook)
        if idem is not None and (key, idem) in self._keys:
            request_id, first = self._keys[(key, idem)]
            if first != what:
                detail = "Idempotency-Key was already used with different request parameters"
                return detail_reply(422, detail, "idempotency_mismatch")
            job = self.engine.get(request_id)
            if job is not None:
                return self._reply(job, 200, "replayed")
        model = MODELS[model_id]
        try:
            params = _parse(model, body, self.engine.files, req.origin)
        except _Invalid as exc:
            return detail_reply(422, exc.items, "invalid")
        try:
            fault = self.state.fault_for(params["prompt"], key)
        except BadRequest as exc:
            return detail_reply(400, str(exc), "invalid")
        if fault is None and self.state.check_quota(key) is not None:
            fault = "rate_limit"
        refused = self._refusal(fault, key)
        if refused is not None:
            return refused
        request_id = str(uuid.uuid4())
        data = {"model": model, "params": params, "origin": req.origin, "webhook": webhook}
        lane = ("higgsfield", key)
        job = self.engine.submit(lane, request_id, params["prompt"], fault, data=data)
        self._requests.setdefault(key, []).append(request_id)
        if idem is not None:
            self._keys[(key, idem)] = (request_id, what)
        if webhook:
            self.engine.webhooks.schedule(job.end, lambda: self._webhook(job))
        # The initial answer is always "queued" (/docs/concepts/requests, "Initial response").
        return Reply.of(200, {**self._body(job, job.created), "status": "queued"}, "queued", _cid())

    def _refusal(self, fault: str | None, key: str) -> Reply | None:
        match fault:
            case "out_of_credit":
                return detail_reply(403, "Insufficient credits", fault)
            case "rate_limit" | "daily_quota":
                return self._queue_full(fault)
            case "unavailable" | "saturated":
                return detail_reply(503, "Service temporarily unavailable", fault)
            case "internal":
                return detail_reply(500, "Internal server error", fault)
            case "region":
                return detail_reply(423, "Model is temporarily blocked", fault)
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
        if self._waiting(key) >= QUEUE_MULTIPLE * self.config.queue_concurrency:
            return self._queue_full("queue_full")
        return None

    def _queue_full(self, outcome: str) -> Reply:
        limit = QUEUE_MULTIPLE * self.config.queue_concurrency
        headers = (("Retry-After", str(max(1, math.ceil(THROTTLE_WAIT)))),)
        detail = f"Account queue is full ({limit} requests waiting)"
        return detail_reply(429, detail, outcome, headers, code="account_queue_full", limit=limit)

    def _waiting(self, key: str) -> int:
        """This key's requests that have not started yet (cancelled ones excluded); the
        ones that have started are forgotten here."""
        now = time.monotonic()
        jobs = [self.engine.get(i) for i in self._requests.get(key, [])]
        waiting = [j for j in jobs if j is not None and j.start > now and j.cancelled_at is None]
        self._requests[key] = [j.id for j in waiting]
        return len(waiting)

    # --- status, cancel -------------------------------------------------------------

    def _state(self, job, now: float) -> str:
        if job.cancelled_at is not None and job.cancelled_at < job.start:
            return "canceled"
        if now < job.start:
            return "queued"
        if now < job.end:
            return "in_progress"
        return job.outcome(self._make)["status"]

    def _body(self, job, now: float) -> dict:
        base = f"{job.data['origin']}/higgsfield/requests/{job.id}"
        body = {
            "status": self._state(job, now),
            "request_id": job.id,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }
        if body["status"] in ("completed", "failed", "nsfw"):
            made = job.outcome(self._make)
            body.update({k: v for k, v in made.items() if k != "status"})
        return body

    def _reply(self, job, status: int, outcome: str) -> Reply:
        return Reply.of(status, self._body(job, time.monotonic()), outcome, _cid())

    def _status(self, job) -> Reply:
        now = time.monotonic()
        reply = self._reply(job, 200, self._state(job, now))
        if job.fault == "malformed" and now >= job.end:
            return Reply(200, media.cut_json(reply.body), "malformed")
        return reply

    def _cancel(self, job) -> Reply:
        now = time.monotonic()
        if self._state(job, now) != "queued":
            return detail_reply(400, "Request can not be canceled", "not_cancellable")
        self.engine.cancel(job, now)
        return Reply(202, b"", "cancelled")

    # --- what the model made --------------------------------------------------------

    def _make(self, job) -> dict:
        params = job.data["params"]
        match job.fault:
            case "prompt_block" | "image_safety":
                return {"status": "nsfw"}
            case "no_image" | "text_only":
                return {"status": "completed", "images": []}
            case "deadline":
                return {"status": "failed", "error": "Generation timed out"}
            case "capacity":
                return {"status": "failed", "error": "Model is overloaded, please try again"}
        width, height = params["size"]
        image = render_image(params["prompt"], width, height, "PNG")
        if job.fault == "truncated":
            image = media.cut(image)
        name = self.engine.store(image, "png", "image/png", job.end)
        return {"status": "completed", "images": [{"url": f"{job.data['origin']}/files/{name}"}]}

    def _webhook(self, job):
        now = time.monotonic()
        if self._state(job, now) not in ("completed", "failed", "nsfw"):
            return None  # cancelled while queued: no final status to report
        raw = json.dumps(self._body(job, now)).encode()
        if job.fault == "malformed":
            raw = media.cut_json(raw)
        return job.data["webhook"], raw, {"Content-Type": "application/json"}


class _Invalid(Exception):
    def __init__(self, items: list[dict]) -> None:
        super().__init__("invalid")
        self.items = items


def _parse(model: Model, body: dict, files, origin: str) -> dict:
    items: list[dict] = []
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        items.append(_missing("prompt"))
    ratio = body.get("aspect_ratio", "1:1")
    if ratio not in model.ratios:
        items.append(_enum("aspect_ratio", ratio, model.ratios))
    resolution = body.get("resolution", next(iter(model.resolutions)))
    if resolution not in model.resolutions:
        items.append(_enum("resolution", resolution, tuple(model.resolutions)))
    references = 0
    if model.references and model.references in body:
        references = _references(model.references, body[model.references], files, origin, items)
    if items:
        raise _Invalid(items)
    size = pixels(ratio, model.resolutions[resolution])
    return {"prompt": prompt, "size": size, "references": references}


def _references(name: str, value, files, origin: str, items: list[dict]) -> int:
    if not isinstance(value, list) or len(value) > MAX_REFERENCES:
        msg = f"Input should be a list of at most {MAX_REFERENCES} images"
        items.append({"type": "list_type", "loc": ["body", name], "msg": msg})
        return 0
    for i, item in enumerate(value):
        url = item.get("image_url") if isinstance(item, dict) else None
        if not isinstance(item, dict) or item.get("type") != "image_url":
            msg = 'Input should be an object {"type": "image_url", "image_url": …}'
            items.append({"type": "model_type", "loc": ["body", name, i], "msg": msg})
            continue
        try:
            media.load_reference(url, files, origin)
        except media.BadImage as exc:
            items.append({"type": "value_error", "loc": ["body", name, i], "msg": str(exc)})
    return len(value)
