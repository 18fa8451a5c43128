"""Leonardo.ai's REST API for the sandbox, under ``/leonardo`` (a provider's base_url is
``{sandbox}/leonardo``; the real one is ``https://cloud.leonardo.ai/api/rest``).

Wire facts relied on (read late 2026; the provider module, ``providers/leonardo.py``,
gives the sources at length):

* ``POST /v2/generations`` with ``Authorization: Bearer <key>`` and ``{"model",
  "parameters": {"prompt", "width", "height", "quantity" (1–8), "prompt_enhance",
  "style_ids", "seed", "guidances": {"image_reference": [{"image": {"id", "type"},
  "strength"}]}}, "public"}`` → ``{"generate": {"generationId", "apiCreditCost"}}``
  (docs.leonardo.ai: the Nano Banana, Nano Banana Pro and Nano Banana 2 guides).
  References: up to 6, 14 for ``google/nano-banana-2.1``.
* ``POST /v1/init-image {"extension"}`` → ``{"uploadInitImage": {"id", "url", "fields",
  "key"}}`` (``fields`` a JSON string); the file goes to ``url`` as a multipart form with
  those fields (S3's presigned POST; here ``POST /leonardo/s3-upload``, answering 204).
* ``GET /v1/generations/{id}`` → ``{"generations_by_pk": {"id", "status": PENDING |
  COMPLETE | FAILED, "generated_images": [{"id", "url", "nsfw", "likeCount"}],
  "imageWidth", "imageHeight", "modelId", "prompt", "public", "createdAt"}}``; an unknown
  id answers ``{"generations_by_pk": null}``. ``GET /v1/me`` → ``{"user_details":
  [{"user": {"id", "username"}, "apiSubscriptionTokens", "apiPaidTokens",
  "apiConcurrencySlots", …}]}`` (the official Python SDK's models).
* Only listed width/height pairs are made as asked; others come back redrawn square
  (what public code measured on the real service). The sandbox keeps its own table
  (Google's native output sizes for each model: 2.5 Flash Image's 1K table, the Gemini 3
  table for the others at 1K, 2K and 4K) and squares anything else, so a client that
  lets the upstream square an image is caught.
* Errors are ``{"error", "path": "$", "code"}``: out of credit is 400 "not enough api
  tokens userId: …" (quoted from live answers in public code).

Not confirmed, the sandbox's own choices: the 401, 429, 5xx and moderation wordings, the
credit costs (:data:`CREDITS`), the upload field names (S3's ``key``, ``policy``,
``x-amz-signature``).

Fault classes: out_of_credit → 400 "not enough api tokens"; rate_limit, daily_quota →
429 at create; unavailable → 503, internal → 500, timeout → no answer at create;
prompt_block → 400 moderation refusal; image_safety → COMPLETE with ``nsfw: true``;
no_image, text_only → COMPLETE without images; deadline, region, capacity, saturated →
FAILED; malformed → the finished generation is unreadable JSON; truncated → the image
file is cut short; slow_queue → the generation runs ``slow_queue_seconds`` longer.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP

from generations.sandbox import media
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import render_image
from generations.sandbox.state import Reply, Request

GENERATION_PATH = re.compile(r"^/v1/generations/(?P<id>[0-9a-f-]{36})$")
UPLOAD_PATH = "/s3-upload"
THROTTLE_WAIT = 2
DENIED = b"<Error><Code>AccessDenied</Code><Message>Invalid according to Policy</Message></Error>"
NO_TOKENS = "not enough api tokens userId: 3aa5736c-0000-4000-8000-sandbox00000"
MODERATION = "Your prompt was flagged by our content moderation filter."
CREDITS = {"gemini-2.5-flash-image": 24, "gemini-image-2": 80, "nano-banana-2": 40}
_FLASH_1K = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}  # fmt: skip
_GEMINI_3_1K = {
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}  # fmt: skip
_GEMINI_3 = {(w * k, h * k) for w, h in _GEMINI_3_1K.values() for k in (1, 2, 4)}
SIZES = {
    "gemini-2.5-flash-image": set(_FLASH_1K.values()),
    "gemini-image-2": _GEMINI_3,
    "nano-banana-2": _GEMINI_3,
    "google/nano-banana-2.1": _GEMINI_3,
}
MAX_REFERENCES = {"google/nano-banana-2.1": 14}


def error(status: int, message: str, outcome: str, code: str = "unexpected", headers=()) -> Reply:
    return Reply.of(status, {"error": message, "path": "$", "code": code}, outcome, headers)


def made_size(model: str, width: int, height: int) -> tuple[int, int]:
    """What the model draws for a requested pair: the pair when listed, else a square."""
    if (width, height) in SIZES[model]:
        return width, height
    side = 1024 if max(width, height) < 2048 else 2048
    return side, side


class LeonardoAPI:
    """The /leonardo routes; generations are jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping
        self._uploads: dict[str, dict] = {}  # init-image id → {key, signature, owner, data}

    def handle(self, req: Request) -> Reply:
        if req.method == "POST" and req.path == UPLOAD_PATH:
            return self._receive_upload(req)  # presigned: no API key, the fields are the proof
        scheme, _, key = (req.headers.get("Authorization") or "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key or key in self.config.invalid_keys:
            return error(401, "Authentication hook unauthorized this request", "api_key_invalid",
                         "access-denied")  # fmt: skip
        if req.method == "POST" and req.path == "/v2/generations":
            return self._create(req, key)
        if req.method == "POST" and req.path == "/v1/init-image":
            return self._init_image(req, key)
        if req.method == "GET" and req.path == "/v1/me":
            return Reply.of(200, self._me(key))
        found = GENERATION_PATH.match(req.path)
        if req.method == "GET" and found:
            return self._generation(found["id"], key)
        return error(404, "resource does not exist", "not_found", "not-found")

    # --- references -------------------------------------------------------------------

    def _init_image(self, req: Request, key: str) -> Reply:
        try:
            extension = json.loads(req.body or b"").get("extension")
        except (ValueError, AttributeError, UnicodeDecodeError):
            extension = None
        if extension not in ("png", "jpg", "jpeg", "webp"):
            return error(
                400, "extension has to be png, jpg, jpeg, or webp", "invalid", "validation-failed"
            )
        image_id = str(uuid.uuid4())
        fields = {
            "key": f"init-images/{image_id}.{extension}",
            "policy": "c2FuZGJveC1wb2xpY3k=",
            "x-amz-signature": secrets.token_hex(16),
        }
        self._uploads[image_id] = {**fields, "owner": key, "data": None}
        target = {
            "id": image_id,
            "url": f"{req.origin}/leonardo{UPLOAD_PATH}",
            "fields": json.dumps(fields),
            "key": fields["key"],
        }
        return Reply.of(200, {"uploadInitImage": target})

    def _receive_upload(self, req: Request) -> Reply:
        content_type = req.headers.get("Content-Type") or ""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + (req.body or b"")
        )
        parts = {
            part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in (message.iter_parts() if message.is_multipart() else [])
        }
        key = (parts.get("key") or b"").decode(errors="replace")
        upload = next((u for u in self._uploads.values() if u["key"] == key), None)
        signature = (parts.get("x-amz-signature") or b"").decode(errors="replace")
        if upload is None or signature != upload["x-amz-signature"] or not parts.get("file"):
            return Reply(403, DENIED, "upload_refused", content_type="application/xml")
        try:
            media.image_size(parts["file"])
        except media.BadImage:
            return Reply(
                400,
                b"<Error><Code>InvalidImage</Code></Error>",
                "invalid",
                content_type="application/xml",
            )
        upload["data"] = parts["file"]
        return Reply(204, b"", "uploaded")

    # --- create -----------------------------------------------------------------------

    def _create(self, req: Request, key: str) -> Reply:
        self.state.count_request()
        try:
            body = json.loads(req.body or b"")
            model, params = body["model"], body["parameters"]
            prompt, width, height = params["prompt"], int(params["width"]), int(params["height"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return error(400, "Unexpected variable or missing field in request", "invalid",
                         "validation-failed")  # fmt: skip
        if model not in SIZES:
            return error(400, f"model not found: {model}", "model_gone", "validation-failed")
        if not (1 <= int(params.get("quantity", 1)) <= 8) or min(width, height) < 32:
            return error(
                400, "quantity must be 1-8 and sides at least 32", "invalid", "validation-failed"
            )
        references = ((params.get("guidances") or {}).get("image_reference")) or []
        refused = self._check_references(references, key, model)
        if refused is not None:
            return refused
        try:
            fault = self.state.fault_for(prompt, key)
        except BadRequest as exc:
            return error(400, str(exc), "invalid", "validation-failed")
        refusal = self.state.check_quota(key)
        if fault is None and refusal is not None:
            fault = "daily_quota" if refusal.per_day else "rate_limit"
        refused = _refusal_at_create(fault, refusal.wait if refusal else THROTTLE_WAIT)
        if refused is not None:
            return refused
        generation_id = str(uuid.uuid4())
        size = made_size(model, width, height)
        data = {
            "model": model,
            "size": size,
            "origin": req.origin,
            "quantity": int(params.get("quantity", 1)),
        }
        self.engine.submit(("leonardo", key), generation_id, prompt, fault, data=data)
        credits = CREDITS.get(model, 40) * data["quantity"]
        return Reply.of(
            200, {"generate": {"generationId": generation_id, "apiCreditCost": credits}}
        )

    def _check_references(self, references, key: str, model: str) -> Reply | None:
        if not isinstance(references, list) or len(references) > MAX_REFERENCES.get(model, 6):
            return error(400, f"at most {MAX_REFERENCES.get(model, 6)} image references", "invalid",
                         "validation-failed")  # fmt: skip
        for reference in references:
            image = reference.get("image") if isinstance(reference, dict) else None
            upload = self._uploads.get((image or {}).get("id", ""))
            if (
                not isinstance(image, dict)
                or image.get("type") != "UPLOADED"
                or upload is None
                or upload["owner"] != key
                or upload["data"] is None
                or reference.get("strength", "MID") not in ("LOW", "MID", "HIGH")
            ):
                return error(
                    400, "init image not found or not uploaded", "invalid", "validation-failed"
                )
        return None

    # --- poll -------------------------------------------------------------------------

    def _generation(self, generation_id: str, key: str) -> Reply:
        job = self.engine.get(generation_id)
        if job is None or job.lane != ("leonardo", key):
            return Reply.of(200, {"generations_by_pk": None}, "not_found")
        self.engine.poll()
        now = time.monotonic()
        width, height = job.data["size"]
        body = {
            "id": job.id,
            "status": "PENDING",
            "generated_images": [],
            "imageWidth": width,
            "imageHeight": height,
            "modelId": job.data["model"],
            "prompt": job.prompt,
            "public": False,
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(job.created_wall)),
        }
        if now < job.end:
            return Reply.of(200, {"generations_by_pk": body}, "pending")
        status, images = job.outcome(self._make)
        body.update(status=status, generated_images=images)
        reply = Reply.of(200, {"generations_by_pk": body}, status.lower())
        if job.fault == "malformed":
            return Reply(200, media.cut_json(reply.body), "malformed")
        return reply

    def _make(self, job) -> tuple[str, list[dict]]:
        match job.fault:
            case "no_image" | "text_only":
                return "COMPLETE", []
            case "deadline" | "region" | "capacity" | "saturated":
                return "FAILED", []
        width, height = job.data["size"]
        images = []
        for _ in range(job.data["quantity"]):
            data = render_image(job.prompt, width, height, "JPEG")
            if job.fault == "truncated":
                data = media.cut(data)
            name = self.engine.store(data, "jpg", "image/jpeg", job.end)
            images.append(
                {
                    "id": str(uuid.uuid4()),
                    "url": f"{job.data['origin']}/files/{name}",
                    "nsfw": job.fault == "image_safety",
                    "likeCount": 0,
                }
            )
        return "COMPLETE", images

    def _me(self, key: str) -> dict:
        broke = key in self.config.broke_keys
        return {
            "user_details": [
                {
                    "user": {"id": "3aa5736c-0000-4000-8000-sandbox00000", "username": "sandbox"},
                    "apiSubscriptionTokens": 0 if broke else 3500,
                    "apiPaidTokens": 0,
                    "apiConcurrencySlots": 10,
                    "apiPlanTokenRenewalDate": None,
                    "tokenRenewalDate": None,
                }
            ]
        }


def _refusal_at_create(fault: str | None, wait: float) -> Reply | None:
    match fault:
        case "out_of_credit":
            return error(400, NO_TOKENS, fault)
        case "rate_limit" | "daily_quota":
            seconds = max(1, int(wait + 0.999))
            return error(429, "Too many requests, please slow down.", fault, "rate-limited",
                         (("Retry-After", str(seconds)),))  # fmt: skip
        case "prompt_block":
            return error(400, MODERATION, fault, "content-moderation")
        case "unavailable":
            return error(503, "Service temporarily unavailable", fault)
        case "internal":
            return error(500, "Internal server error", fault)
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None
