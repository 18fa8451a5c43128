"""The Freepik (Magnific) API's Nano Banana tasks for the sandbox, under ``/freepik`` (a
provider's base_url is ``{sandbox}/freepik``; the real one is ``https://api.freepik.com``
or ``https://api.magnific.com``).

Wire facts relied on (read late 2026; ``providers/freepik.py`` gives the sources):

* ``POST /v1/ai/{endpoint}`` with ``x-freepik-api-key`` (or ``x-magnific-api-key``) →
  200 ``{"data": {"task_id", "status": "CREATED", "generated": []}}``; ``GET
  /v1/ai/{endpoint}/{task_id}`` → the same shape, status CREATED, IN_PROGRESS,
  COMPLETED (``generated``: image URLs) or FAILED (docs.freepik.com, the Gemini 2.5 Flash
  image endpoint's reference).
* Endpoints: ``gemini-2-5-flash-image-preview`` (``prompt``, ``reference_images`` up to
  3 Base64 strings or URLs, ``webhook_url``; it has no ratio field, so it draws squares
  unless a reference sets the shape), ``text-to-image/nano-banana-pro`` (``aspect_ratio``,
  ``resolution`` 1K/2K/4K, ``reference_images`` up to 14 ``{"image", "mime_type"}``),
  ``text-to-image/nano-banana-pro-flash`` (the same, the 14 ratios, and
  ``use_google_search_tool``).
* Webhooks on every status change, the body the task as the GET answers it, signed in
  ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}" keyed with the secret's bytes>`` (docs.freepik.com/webhooks).
  The secret is ``SandboxConfig.freepik_webhook_secret`` when the config has one, else
  :data:`WEBHOOK_SECRET`.
* The WAF answers 403 with an HTML "Penalty Box" page to default client User-Agents
  (shared/CHANNELS.md): the sandbox does so for empty, ``python-httpx``, ``python-
  requests``, ``curl``, ``Go-http-client``, ``axios``, ``node-fetch`` and ``okhttp``
  agents.

Not confirmed, the sandbox's own choices: the 401, 402, 429 and 5xx wordings, the 400
``invalid_params`` shape's reasons, ``has_nsfw`` on a filtered task, the FAILED tasks'
``error`` texts, and the HTML of the Penalty Box page.

Fault classes: out_of_credit → 402; rate_limit → 429, daily_quota → 429 "daily limit";
unavailable → 503, internal → 500, timeout → no answer, at create; prompt_block →
FAILED with a content-policy error; image_safety → COMPLETED with ``has_nsfw: [true]``
and no image; no_image, text_only → COMPLETED without images; deadline, region,
capacity, saturated → FAILED; malformed → the finished task is unreadable JSON;
truncated → the image file is cut short; slow_queue → the task runs longer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass

from generations.sandbox import media
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.specs import ALL_ASPECT_RATIOS, ASPECT_RATIOS
from generations.sandbox.state import Reply, Request, SandboxConfig

WEBHOOK_SECRET = SandboxConfig.freepik_webhook_secret  # the default, for tests
TASK_PATH = re.compile(r"^/v1/ai/(?P<endpoint>.+?)(?:/(?P<task>[0-9a-f-]{36}))?$")
DEFAULT_AGENTS = re.compile(
    r"^(?:$|python-httpx|python-requests|python-urllib|curl/|go-http-client|axios|"
    r"node-fetch|okhttp|java/)",
    re.IGNORECASE,
)
PENALTY_BOX = (
    b"<!DOCTYPE html><html><head><title>Penalty Box</title></head><body><h1>Penalty Box"
    b"</h1><p>Your client has been temporarily blocked.</p></body></html>"
)
THROTTLE_WAIT = 2


@dataclass(frozen=True)
class Endpoint:
    model: str  # the specs model that renders it
    ratios: tuple[str, ...] = ()  # empty: no aspect_ratio field
    resolutions: tuple[str, ...] = ()
    max_references: int = 14
    objects: bool = True  # references as {"image", "mime_type"}


ENDPOINTS = {
    "gemini-2-5-flash-image-preview": Endpoint(
        "gemini-2.5-flash-image", max_references=3, objects=False
    ),
    "text-to-image/nano-banana-pro": Endpoint(
        "gemini-3-pro-image", ASPECT_RATIOS, ("1K", "2K", "4K")
    ),
    "text-to-image/nano-banana-pro-flash": Endpoint(
        "gemini-3.1-flash-image", ALL_ASPECT_RATIOS, ("1K", "2K", "4K")
    ),
}


class _Invalid(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def message(status: int, text: str, outcome: str, headers=(), **extra) -> Reply:
    return Reply.of(status, {"message": text, **extra}, outcome, headers)


class FreepikAPI:
    """The /freepik routes; tasks are jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping
        self.secret = config.freepik_webhook_secret

    def handle(self, req: Request) -> Reply:
        if DEFAULT_AGENTS.match(req.headers.get("User-Agent") or ""):
            return Reply(403, PENALTY_BOX, "penalty_box", content_type="text/html")
        key = req.headers.get("x-freepik-api-key") or req.headers.get("x-magnific-api-key") or ""
        if not key or key in self.config.invalid_keys:
            return message(401, "Invalid API key", "api_key_invalid")
        found = TASK_PATH.match(req.path)
        endpoint = ENDPOINTS.get(found["endpoint"]) if found else None
        if endpoint is None:
            return message(404, "Not found", "not_found")
        if req.method == "POST" and not found["task"]:
            return self._create(req, key, found["endpoint"], endpoint)
        if req.method == "GET" and found["task"]:
            job = self.engine.get(found["task"])
            if job is not None and job.lane == ("freepik", key):
                self.engine.poll()
                return self._answer(job, time.monotonic())
            return message(404, "Task not found", "not_found")
        return message(404, "Not found", "not_found")

    # --- create -----------------------------------------------------------------------

    def _create(self, req: Request, key: str, name: str, endpoint: Endpoint) -> Reply:
        self.state.count_request()
        try:
            body = json.loads(req.body or b"")
            if not isinstance(body, dict):
                raise _Invalid("body", "must be a JSON object")
            ratio, size, references = _params(endpoint, body, self.engine.files, req.origin)
            webhook = body.get("webhook_url") or ""
            if not isinstance(webhook, str) or (webhook and not webhook.startswith("http")):
                raise _Invalid("webhook_url", "must be a valid URL")
            fault = self.state.fault_for(body["prompt"], key)
        except (ValueError, UnicodeDecodeError):
            return message(400, "Invalid JSON body", "invalid")
        except _Invalid as exc:
            params = [{"field": exc.field, "reason": exc.reason}]
            return message(400, "Parameter validation failed", "invalid", invalid_params=params)
        except BadRequest as exc:
            return message(400, str(exc), "invalid")
        refusal = self.state.check_quota(key)
        if fault is None and refusal is not None:
            fault = "daily_quota" if refusal.per_day else "rate_limit"
        refused = _refusal_at_create(fault, refusal.wait if refusal else THROTTLE_WAIT)
        if refused is not None:
            return refused
        if references and not endpoint.ratios:  # no ratio field: the reference sets the shape
            ratio = media.closest_ratio(references[0].width, references[0].height, ASPECT_RATIOS)
        task_id = str(uuid.uuid4())
        data = {
            "endpoint": endpoint,
            "ratio": ratio,
            "size": size,
            "origin": req.origin,
            "webhook": webhook,
            "name": name,
        }
        job = self.engine.submit(("freepik", key), task_id, body["prompt"], fault, data=data)
        if webhook:
            self._schedule(job, job.start, "IN_PROGRESS")
            self._schedule(job, job.end, "DONE")
        return Reply.of(200, {"data": {"task_id": task_id, "status": "CREATED", "generated": []}})

    # --- the task ---------------------------------------------------------------------

    def _task(self, job, at: float) -> dict:
        if at < job.start:
            return {"task_id": job.id, "status": "CREATED", "generated": []}
        if at < job.end:
            return {"task_id": job.id, "status": "IN_PROGRESS", "generated": []}
        return {"task_id": job.id, **job.outcome(self._make)}

    def _answer(self, job, now: float) -> Reply:
        task = self._task(job, now)
        reply = Reply.of(200, {"data": task}, task["status"].lower())
        if job.fault == "malformed" and now >= job.end:
            return Reply(200, media.cut_json(reply.body), "malformed")
        return reply

    def _make(self, job) -> dict:
        match job.fault:
            case "prompt_block":
                return _failed("The prompt violates our content policy.")
            case "image_safety":
                return {"status": "COMPLETED", "generated": [], "has_nsfw": [True]}
            case "no_image" | "text_only":
                return {"status": "COMPLETED", "generated": []}
            case "deadline" | "region" | "capacity" | "saturated":
                return _failed("The generation failed. Please try again.")
        endpoint: Endpoint = job.data["endpoint"]
        width, height = dimensions(endpoint.model, job.data["ratio"], job.data["size"])
        image = render_image(job.prompt, width, height, "PNG")
        if job.fault == "truncated":
            image = media.cut(image)
        name = self.engine.store(image, "png", "image/png", job.end)
        url = f"{job.data['origin']}/files/{name}"
        return {"status": "COMPLETED", "generated": [url], "has_nsfw": [False]}

    # --- webhooks ---------------------------------------------------------------------

    def _schedule(self, job, due: float, event: str) -> None:
        def build():
            task = self._task(job, due if event == "IN_PROGRESS" else job.end)
            raw = json.dumps({"data": task}).encode()
            if job.fault == "malformed" and event == "DONE":
                raw = media.cut_json(raw)
            return job.data["webhook"], raw, self.sign(f"wh_{secrets.token_hex(12)}", raw)

        self.engine.webhooks.schedule(due, build)

    def sign(self, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Freepik's webhook headers for ``body``, signed with the sandbox's secret."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        signed = f"{webhook_id}.{stamp}.".encode() + body
        digest = hmac.new(self.secret.encode(), signed, hashlib.sha256).digest()
        return {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        }


def _failed(error: str) -> dict:
    return {"status": "FAILED", "generated": [], "error": error}


def _params(endpoint: Endpoint, body: dict, files, origin: str):
    """(ratio, size, references) of a create body, checked as the endpoint's schema does."""
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Invalid("prompt", "is required")
    ratio, size = "1:1", "1K"
    if endpoint.ratios:
        ratio = body.get("aspect_ratio", "1:1")
        if ratio not in endpoint.ratios:
            raise _Invalid("aspect_ratio", f"must be one of {', '.join(endpoint.ratios)}")
    if endpoint.resolutions:
        size = body.get("resolution", "1K")
        if size not in endpoint.resolutions:
            raise _Invalid("resolution", f"must be one of {', '.join(endpoint.resolutions)}")
    given = body.get("reference_images") or []
    if not isinstance(given, list) or len(given) > endpoint.max_references:
        raise _Invalid("reference_images", f"at most {endpoint.max_references} images")
    references = []
    for i, item in enumerate(given):
        image = item.get("image") if endpoint.objects and isinstance(item, dict) else item
        if endpoint.objects and not (isinstance(item, dict) and item.get("mime_type")):
            raise _Invalid(f"reference_images.{i}", "must be an object with image and mime_type")
        references.append(_reference(image, files, origin, f"reference_images.{i}"))
    return ratio, size, references


def _reference(image, files, origin: str, field: str) -> media.Reference:
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        try:
            return media.load_reference(image, files, origin)
        except media.BadImage as exc:
            raise _Invalid(field, str(exc)) from None
    try:
        data = base64.b64decode(image or "", validate=True)
        width, height = media.image_size(data)
    except (binascii.Error, ValueError, TypeError, media.BadImage):
        raise _Invalid(field, "must be a Base64 encoded image or a public URL") from None
    return media.Reference(data, width, height)


def _refusal_at_create(fault: str | None, wait: float) -> Reply | None:
    retry = (("Retry-After", str(max(1, int(wait + 0.999)))),)
    match fault:
        case "out_of_credit":
            return message(402, "Insufficient credits. Please top up your balance.", fault)
        case "rate_limit":
            return message(429, "Rate limit exceeded. Please slow down.", fault, retry)
        case "daily_quota":
            return message(429, "You have exceeded your daily limit of requests.", fault, retry)
        case "unavailable":
            return message(503, "Service temporarily unavailable", fault)
        case "internal":
            return message(500, "Internal server error", fault)
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None
