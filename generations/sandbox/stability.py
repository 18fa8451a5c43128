"""Stability AI's Stable Image API for the sandbox, under ``/stability`` (a provider's
base_url is ``{sandbox}/stability``; the real one is ``https://api.stability.ai``).

Wire facts relied on (Stability's v2beta API reference as quoted in public code, its own
ComfyUI client github:Stability-AI/ComfyUI-SAI_API stability_api.py, and the v1 spec in
github:Stability-AI/rest-api-support spec/v1.yaml):

* ``POST /v2beta/stable-image/generate/{ultra|core|sd3}``, ``Authorization: Bearer sk-…``,
  multipart/form-data: ``prompt`` (required, at most 10,000 characters), ``aspect_ratio``
  (16:9 1:1 21:9 2:3 3:2 4:5 5:4 9:16 9:21, default 1:1), ``output_format`` (png jpeg
  webp, default png; sd3 png jpeg), ``negative_prompt``, ``seed`` (0–4294967294),
  ``style_preset``; Ultra ``image`` + ``strength``; sd3 ``model`` (sd3.5-large,
  sd3.5-large-turbo, sd3.5-medium, sd3.5-flash; default sd3.5-large) and ``mode``
  (text-to-image | image-to-image, the latter with ``image`` + ``strength``).
* ``Accept: image/*`` (the default) → the image bytes with ``finish-reason`` (SUCCESS |
  CONTENT_FILTERED), ``seed`` and ``x-request-id``; ``Accept: application/json`` →
  ``{image: base64, finish_reason, seed}``.
* Output sizes per ratio (ComfyUI-SAI_API's lists): Ultra and SD3 about 1 MP (1:1
  1024×1024, 16:9 1344×768, 21:9 1536×640, 3:2 1216×832, 5:4 1088×896 and the
  transposes), Core about 1.5 MP (1:1 1536×1536, 16:9 2016×1152, 21:9 2304×960, 3:2
  1824×1248, 5:4 1632×1344). Image-to-image keeps the reference's ratio (nearest listed).
* Errors ``{id, name, errors: [str]}``: 400 ``bad_request``, 401 ``unauthorized``, 402
  ``payment_required``, 403 ``content_moderation`` ("Your request was flagged by our
  content moderation system"), 413 (over 10 MiB), 422, 429 (150 requests per 10 seconds,
  then 60 s timed out), 500 ``internal_error``. ``GET /v1/user/balance`` → ``{"credits"}``.

Not confirmed, the sandbox's own choices: the wording of every ``errors`` entry but the
moderation one, the names of the 413/422/429 errors (``payload_too_large``,
``invalid_request``, ``rate_limit_exceeded``), 503/504 bodies, a fresh account's balance
(25 credits, the sign-up grant), and the blur of a filtered image (a smaller rendering
scaled up).

Fault classes take Stability's forms: out_of_credit → 402; rate_limit/daily_quota → 429;
unavailable/saturated/capacity → 503, internal and no_image/text_only → 500; deadline →
504; timeout → no answer; region → 422; prompt_block → 403 ``content_moderation``;
image_safety → 200 with ``finish-reason: CONTENT_FILTERED``; malformed → a 200 whose
body is half of the JSON form; truncated → the image cut short; slow_queue → the answer
comes ``slow_queue_seconds`` later.
"""

from __future__ import annotations

import base64
import io
import secrets
import uuid

from PIL import Image

from generations.sandbox import media
from generations.sandbox.openai_images import InvalidRequest, image_form
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import render_image
from generations.sandbox.state import Reply, Request

GENERATE = "/v2beta/stable-image/generate/"
BALANCE = "/v1/user/balance"
MAX_BODY = 10 * 1024 * 1024
RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
FORMATS = {
    "ultra": ("png", "jpeg", "webp"),
    "core": ("png", "jpeg", "webp"),
    "sd3": ("png", "jpeg"),
}
ONE_MP = {"1:1": (1024, 1024), "16:9": (1344, 768), "21:9": (1536, 640), "3:2": (1216, 832)}
ONE_MP["5:4"] = (1088, 896)
ONE_AND_HALF_MP = {"1:1": (1536, 1536), "16:9": (2016, 1152), "21:9": (2304, 960)}
ONE_AND_HALF_MP.update({"3:2": (1824, 1248), "5:4": (1632, 1344)})
FRESH_CREDITS = 25.0
MODERATED = (
    "Your request was flagged by our content moderation system, as a result your request "
    "was denied and you were not charged."
)
THROTTLED = (
    "You have exceeded the rate limit of 150 requests within a 10 second period, and have "
    "been timed out for 60 seconds."
)


def size_of(endpoint: str, ratio: str) -> tuple[int, int]:
    table = ONE_AND_HALF_MP if endpoint == "core" else ONE_MP
    if ratio in table:
        return table[ratio]
    w, h = ratio.split(":")
    width, height = table[f"{h}:{w}"]
    return height, width


def error_reply(status: int, name: str, errors: list[str], outcome: str, headers=()) -> Reply:
    body = {"id": secrets.token_hex(16), "name": name, "errors": errors}
    return Reply.of(status, body, outcome, headers)


class _Invalid(Exception):
    pass


class StabilityAPI:
    """The /stability routes: answers at once (Stability's generate calls are synchronous)."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping

    def handle(self, req: Request) -> Reply:
        scheme, _, key = (req.headers.get("Authorization") or "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return error_reply(401, "unauthorized", ["authorization: missing"], "no_key")
        if key in self.config.invalid_keys:
            return error_reply(
                401, "unauthorized", ["Incorrect API key provided"], "api_key_invalid"
            )
        if req.method == "GET" and req.path == BALANCE:
            credits = 0.0 if key in self.config.broke_keys else FRESH_CREDITS
            return Reply.of(200, {"credits": credits})
        endpoint = req.path.removeprefix(GENERATE) if req.path.startswith(GENERATE) else ""
        if req.method == "POST" and endpoint in FORMATS:
            return self._generate(req, key, endpoint)
        return error_reply(
            404, "not_found", [f"{req.method} {req.path} was not found"], "not_found"
        )

    def _generate(self, req: Request, key: str, endpoint: str) -> Reply:
        self.state.count_request()
        if len(req.body or b"") > MAX_BODY:
            return error_reply(
                413, "payload_too_large", ["Your request was larger than 10MiB."], "too_large"
            )
        try:
            fields, images, _mask = image_form(
                req.body or b"", req.headers.get("Content-Type") or ""
            )
            params = _parse(endpoint, fields, images)
            fault = self.state.fault_for(params["prompt"], key)
        except (InvalidRequest, _Invalid, BadRequest) as exc:
            return error_reply(400, "bad_request", [str(exc)], "invalid")
        if fault is None:
            refusal = self.state.check_quota(key)
            if refusal is not None:
                fault = "rate_limit"
        refused = _refusal(fault)
        if refused is not None:
            return refused
        pause = self.state.latency() + (
            self.config.slow_queue_seconds if fault == "slow_queue" else 0
        )
        if pause and self.stopping.wait(pause):
            return Reply(0, outcome="stopping", hang=True)
        return self._image(req, params, fault)

    def _image(self, req: Request, params: dict, fault: str | None) -> Reply:
        width, height = params["size"]
        pil, mime, _ext = media.FORMATS[params["format"]]
        image = render_image(params["prompt"], width, height, pil)
        reason = "SUCCESS"
        if fault == "image_safety":
            image, reason = _blurred(params["prompt"], width, height, pil), "CONTENT_FILTERED"
        if fault == "truncated":
            image = media.cut(image)
        seed = str(params["seed"])
        request_id = uuid.uuid4().hex
        wants_json = "application/json" in (req.headers.get("Accept") or "")
        if wants_json or fault == "malformed":
            body = {
                "image": base64.b64encode(image).decode(),
                "finish_reason": reason,
                "seed": int(seed),
            }
            reply = Reply.of(
                200,
                body,
                "ok",
                (("x-request-id", request_id),),
                content_type=f"application/json; type={mime}",
            )
            if fault == "malformed":
                cut = media.cut_json(reply.body)
                return Reply(
                    200, cut, "malformed", headers=reply.headers, content_type=reply.content_type
                )
            return reply
        headers = (("finish-reason", reason), ("seed", seed), ("x-request-id", request_id))
        outcome = "ok" if reason == "SUCCESS" else "content_filtered"
        return Reply(200, image, outcome, headers=headers, content_type=mime)


def _parse(endpoint: str, fields: dict[str, str], images: list[bytes]) -> dict:
    prompt = fields.get("prompt", "")
    if not prompt.strip():
        raise _Invalid("prompt: cannot be empty")
    if len(prompt) > 10_000:
        raise _Invalid("prompt: must be at most 10000 characters")
    fmt = fields.get("output_format", "png")
    if fmt not in FORMATS[endpoint]:
        raise _Invalid(f"output_format: must be one of {', '.join(FORMATS[endpoint])}")
    if endpoint == "sd3" and fields.get("model", SD3_MODELS[0]) not in SD3_MODELS:
        raise _Invalid(f"model: must be one of {', '.join(SD3_MODELS)}")
    seed = fields.get("seed", "0")
    if not seed.isdigit() or int(seed) > 4294967294:
        raise _Invalid("seed: must be an integer from 0 to 4294967294")
    wants_image = (endpoint == "ultra" and bool(images)) or fields.get("mode") == "image-to-image"
    if endpoint == "sd3" and fields.get("mode", "text-to-image") not in (
        "text-to-image",
        "image-to-image",
    ):
        raise _Invalid("mode: must be text-to-image or image-to-image")
    if endpoint == "core" or not wants_image:
        ratio = fields.get("aspect_ratio", "1:1")
        if ratio not in RATIOS:
            raise _Invalid(f"aspect_ratio: must be one of {', '.join(RATIOS)}")
    else:
        ratio = _reference_ratio(images, fields.get("strength"))
    return {
        "prompt": prompt,
        "size": size_of(endpoint, ratio),
        "format": fmt,
        "seed": int(seed) or secrets.randbelow(4294967294),
    }


def _reference_ratio(images: list[bytes], strength: str | None) -> str:
    if len(images) != 1:
        raise _Invalid("image: exactly one image is required for image-to-image")
    try:
        value = float(strength or "")
    except ValueError:
        raise _Invalid(
            "strength: is required with an image and must be a number from 0 to 1"
        ) from None
    if not 0 <= value <= 1:
        raise _Invalid("strength: must be a number from 0 to 1")
    try:
        width, height = media.image_size(images[0])
    except media.BadImage:
        raise _Invalid("image: the file is not an image") from None
    if width < 64 or height < 64:
        raise _Invalid("image: every side must be at least 64 pixels")
    return media.closest_ratio(width, height, RATIOS)


def _blurred(prompt: str, width: int, height: int, pil: str) -> bytes:
    small = Image.open(
        io.BytesIO(render_image(prompt, max(width // 32, 8), max(height // 32, 8), "PNG"))
    )
    out = io.BytesIO()
    small.convert("RGB").resize((width, height), Image.BILINEAR).save(out, pil)
    return out.getvalue()


def _refusal(fault: str | None) -> Reply | None:
    match fault:
        case "out_of_credit":
            errors = [
                "You lack sufficient credits to make this request. Please purchase more credits."
            ]
            return error_reply(402, "payment_required", errors, fault)
        case "rate_limit" | "daily_quota":
            return error_reply(429, "rate_limit_exceeded", [THROTTLED], fault)
        case "unavailable" | "saturated" | "capacity":
            return error_reply(
                503, "service_unavailable", ["The service is temporarily unavailable."], fault
            )
        case "internal" | "no_image" | "text_only":
            return error_reply(
                500,
                "internal_error",
                ["An unexpected server error has occurred, please try again later."],
                fault,
            )
        case "deadline":
            return error_reply(504, "gateway_timeout", ["The request timed out."], fault)
        case "region":
            return error_reply(
                422, "invalid_request", ["This service is not available in your region."], fault
            )
        case "prompt_block":
            return error_reply(403, "content_moderation", [MODERATED], fault)
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None
