"""OpenAI's Images protocol for the sandbox: reading requests and writing answers.

``POST /v1/images/generations`` takes JSON; ``POST /v1/images/edits`` takes
multipart form data with the images as ``image`` or repeated ``image[]`` parts.
Answers have gpt-image-1's shape (``created``, ``data[].b64_json``, ``usage``
with input/output token counts); dall-e models answer without usage, and
dall-e-3 with a ``revised_prompt``. Errors use OpenAI's envelope
``{"error": {"message", "type", "param", "code"}}``.

As the real API does, gpt-image models refuse ``response_format`` (they always
answer inline). Unlike it, the sandbox cannot host files, so dall-e models must
ask for ``b64_json``.
"""

from __future__ import annotations

import base64
import io
import json
import time
from dataclasses import dataclass

from PIL import Image

from generations.sandbox.parse import multipart
from generations.sandbox.responses import text_tokens
from generations.sandbox.specs import GPT_IMAGE_OUTPUT_TOKENS, ImagesModel, images_model

# What gpt-image-1 reports for a ~1024 px reference at the default (low) input fidelity.
REFERENCE_IMAGE_TOKENS = 323
COMMON_FIELDS = frozenset({"model", "prompt", "n", "size", "quality", "user"})
GPT_IMAGE_FIELDS = frozenset(
    {"background", "moderation", "output_format", "output_compression", "stream", "partial_images"}
)
EDIT_FIELDS = frozenset({"image", "image[]", "mask"})
OUTPUT_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP")
_NOT_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
_KEY_HELP = "You can find your API key at https://platform.openai.com/account/api-keys."
_QUOTA_DOCS = "https://platform.openai.com/docs/guides/error-codes/api-errors"
_RATE_LIMITS_DOCS = "https://platform.openai.com/account/rate-limits"
_SAFETY = (
    "Your request was rejected as a result of our safety system. Your request may contain "
    "content that is not allowed by our safety system."
)


class InvalidRequest(Exception):
    """A 400 ``invalid_request_error``; the message is what the client reads."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code

    def body(self) -> dict:
        return error_body(self.message, "invalid_request_error", param=self.param, code=self.code)


@dataclass(frozen=True)
class ImagesRequest:
    model: str
    prompt: str
    n: int = 1
    size: str = "auto"
    quality: str = "auto"
    output_format: str = "png"
    references: int = 0

    @property
    def spec(self) -> ImagesModel:
        return images_model(self.model)

    @property
    def pixel_size(self) -> str:
        """The size made: ``auto`` becomes square (the real model picks one per prompt)."""
        return "1024x1024" if self.size == "auto" else self.size

    @property
    def made_quality(self) -> str:
        return "high" if self.quality == "auto" else self.quality

    def dimensions(self) -> tuple[int, int]:
        width, height = self.pixel_size.split("x")
        return int(width), int(height)


# --- requests -----------------------------------------------------------------


def parse_generations(raw: bytes) -> ImagesRequest:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(_NOT_JSON) from None
    if not isinstance(body, dict):
        raise InvalidRequest(_NOT_JSON)
    return _request(body, references=0, edits=False)


def parse_edits(raw: bytes, content_type: str) -> ImagesRequest:
    fields, images, mask = image_form(raw, content_type)
    if not images:
        raise InvalidRequest(
            "Missing required parameter: 'image'.", param="image", code="missing_required_parameter"
        )
    request = _request(fields, references=len(images), edits=True)
    spec = request.spec
    if len(images) > spec.max_edit_images:
        if not spec.max_edit_images:
            raise InvalidRequest(
                f"Image edits are not supported for {request.model}.", param="model"
            )
        raise InvalidRequest(
            f"Invalid 'image': too many images. Expected at most {spec.max_edit_images}, "
            f"but got {len(images)} instead.",
            param="image",
            code="array_above_max_length",
        )
    for i, data in enumerate(images, start=1):
        _check_reference(data, i)
    if mask is not None:
        _check_mask(mask, images[0])
    return request


def _request(fields: dict, *, references: int, edits: bool) -> ImagesRequest:
    model = fields.get("model") or "dall-e-2"  # the API's default, for both endpoints
    if not isinstance(model, str):
        raise _invalid_type("model", "a string")
    spec = images_model(model)
    allowed = _allowed_fields(spec, edits)
    for name in fields:
        if name not in allowed:
            raise InvalidRequest(
                f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter"
            )
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequest(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if _truthy(fields.get("stream")):
        raise InvalidRequest("The sandbox does not stream images.", param="stream")
    _check_response_format(spec, fields)
    default_size, default_quality = "1024x1024", spec.qualities[0]
    if spec.reports_usage:
        default_size = default_quality = "auto"
    return ImagesRequest(
        model=model,
        prompt=prompt,
        n=_n(fields.get("n", 1), spec),
        size=_choice(fields, "size", spec.sizes, default_size),
        quality=_choice(fields, "quality", spec.qualities, default_quality),
        output_format=_choice(fields, "output_format", tuple(OUTPUT_FORMATS), "png"),
        references=references,
    )


def _allowed_fields(spec: ImagesModel, edits: bool) -> frozenset[str]:
    allowed = COMMON_FIELDS | (EDIT_FIELDS if edits else frozenset())
    if spec.reports_usage:
        return allowed | GPT_IMAGE_FIELDS | ({"input_fidelity"} if edits else set())
    return allowed | {"response_format"} | ({"style"} if spec.revises_prompt else set())


def _check_response_format(spec: ImagesModel, fields: dict) -> None:
    if spec.reports_usage:
        return  # not an allowed field at all: refused as unknown
    if fields.get("response_format") != "b64_json":
        raise InvalidRequest(
            "The Sandbox (offline) cannot host image URLs: send response_format=b64_json.",
            param="response_format",
            code="invalid_value",
        )


def _n(value, spec: ImagesModel) -> int:
    if isinstance(value, str) and value.isdigit():  # form fields are strings
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid_type("n", "an integer")
    if value < 1:
        raise InvalidRequest(
            f"Invalid 'n': integer below minimum value. Expected a value >= 1, but got {value} "
            "instead.",
            param="n",
            code="integer_below_min_value",
        )
    if value > spec.max_n:
        raise InvalidRequest(
            f"Invalid 'n': integer above maximum value. Expected a value <= {spec.max_n}, but got "
            f"{value} instead.",
            param="n",
            code="integer_above_max_value",
        )
    return value


def _choice(fields: dict, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = fields.get(name)
    if value is None:
        return default
    if value not in allowed:
        listed = ", ".join(f"'{v}'" for v in allowed[:-1]) + f", and '{allowed[-1]}'"
        if len(allowed) == 1:
            listed = f"'{allowed[0]}'"
        raise InvalidRequest(
            f"Invalid value: '{value}'. Supported values are: {listed}.",
            param=name,
            code="invalid_value",
        )
    return value


def _invalid_type(name: str, expected: str) -> InvalidRequest:
    return InvalidRequest(
        f"Invalid type for '{name}': expected {expected}.", param=name, code="invalid_type"
    )


def _truthy(value) -> bool:
    return value not in (None, False, "false", "False", "0", "")


def image_form(raw: bytes, content_type: str) -> tuple[dict[str, str], list[bytes], bytes | None]:
    """multipart/form-data → text fields, the image files in order, and the mask."""
    if (
        not content_type.lower().startswith("multipart/form-data")
        or "boundary=" not in content_type
    ):
        raise InvalidRequest(
            f"Invalid Content-Type header ({content_type or 'none'}), expected multipart/form-data."
        )
    parts = multipart(raw, content_type)
    if not parts:
        raise InvalidRequest("Could not parse multipart form data.")
    fields: dict[str, str] = {}
    images: list[bytes] = []
    mask = None
    for name, _filename, payload in parts:
        if name in ("image", "image[]"):
            images.append(payload)
        elif name == "mask":
            mask = payload
        else:
            fields[name] = payload.decode("utf-8", errors="replace")
    return fields, images, mask


def _check_mask(data: bytes, first: bytes) -> None:
    """As OpenAI checks it: a PNG with an alpha channel, the size of the first image."""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as mask:
            mode, size = mask.mode, mask.size
    except Exception:  # Pillow raises many types for non-images
        raise InvalidRequest(
            "Invalid mask image file, please check your image file.",
            param="mask",
            code="invalid_image_file",
        ) from None
    if mode not in ("RGBA", "LA", "PA", "L"):
        raise InvalidRequest(
            f"Invalid input image - format must be in ['RGBA', 'LA', 'L'], got {mode}.",
            param="mask",
            code="invalid_image_format",
        )
    with Image.open(io.BytesIO(first)) as image:
        if image.size != size:
            raise InvalidRequest(
                "Invalid mask image - mask size does not match image size.",
                param="mask",
                code="invalid_image_dimensions",
            )


def _check_reference(data: bytes, number: int) -> None:
    try:
        with Image.open(io.BytesIO(data), formats=REFERENCE_FORMATS) as image:
            image.load()
    except Exception:  # Pillow raises many types for non-images
        raise InvalidRequest(
            f"Invalid image file or mode for image {number}, please check your image file.",
            param="image",
            code="invalid_image_file",
        ) from None


# --- 200 bodies -----------------------------------------------------------------


def image_body(request: ImagesRequest, images: list[bytes], *, created: int | None = None) -> dict:
    """An answer carrying ``images`` (none: the empty ``data`` of an unmade image)."""
    spec = request.spec
    data = []
    for image in images:
        item = {"b64_json": base64.b64encode(image).decode()}
        if spec.revises_prompt:
            item["revised_prompt"] = f"A detailed rendering of {request.prompt.strip()}"
        data.append(item)
    body: dict = {"created": int(time.time()) if created is None else created}
    if not spec.reports_usage:
        body["data"] = data
        return body
    body.update(background="opaque", data=data, output_format=request.output_format)
    body.update(quality=request.made_quality, size=request.pixel_size)
    body["usage"] = usage(request, made=len(images))
    return body


def usage(request: ImagesRequest, *, made: int) -> dict:
    """gpt-image-1's usage: text and reference tokens in, image tokens out."""
    text = text_tokens(request.prompt)
    image_in = REFERENCE_IMAGE_TOKENS * request.references
    output = GPT_IMAGE_OUTPUT_TOKENS[request.made_quality][request.pixel_size] * made
    return {
        "input_tokens": text + image_in,
        "input_tokens_details": {"image_tokens": image_in, "text_tokens": text},
        "output_tokens": output,
        "total_tokens": text + image_in + output,
    }


# --- errors ---------------------------------------------------------------------


def error_body(
    message: str, kind: str, *, param: str | None = None, code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def rate_limited_body(model: str, wait: float, limit: int) -> dict:
    message = (
        f"Rate limit reached for {model} in organization org-sandbox on images per minute "
        f"(IPM): Limit {limit}, Used {limit}, Requested 1. Please try again in {wait:.3g}s. "
        f"Visit {_RATE_LIMITS_DOCS} to learn more."
    )
    return error_body(message, "requests", code="rate_limit_exceeded")


def rate_limit_headers(wait: float) -> tuple[tuple[str, str], ...]:
    millis = max(0, round(wait * 1000))
    return (("retry-after-ms", str(millis)), ("retry-after", str(-(-millis // 1000))))


def insufficient_quota_body() -> dict:
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"For more information on this error, read the docs: {_QUOTA_DOCS}."
    )
    return error_body(message, "insufficient_quota", code="insufficient_quota")


def blocked_body(model: str) -> dict:
    if images_model(model).reports_usage:
        return error_body(_SAFETY, "image_generation_user_error", code="moderation_blocked")
    return error_body(_SAFETY, "invalid_request_error", code="content_policy_violation")


def region_refused_body() -> dict:
    """403 for a caller in a country OpenAI does not serve."""
    return error_body(
        "Country, region, or territory not supported",
        "request_forbidden",
        code="unsupported_country_region_territory",
    )


def unavailable_body() -> dict:
    return error_body("The engine is currently overloaded, please try again later.", "server_error")


def internal_body() -> dict:
    return error_body(
        "The server had an error while processing your request. Sorry about that!", "server_error"
    )


def timeout_body() -> dict:
    return error_body("Request timed out.", "server_error", code="timeout")


def missing_key_body() -> dict:
    return error_body(
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). " + _KEY_HELP,
        "invalid_request_error",
    )


def invalid_key_body(key: str) -> dict:
    shown = f"{key[:3]}{'*' * max(len(key) - 7, 4)}{key[-4:]}" if len(key) > 8 else "****"
    return error_body(
        f"Incorrect API key provided: {shown}. {_KEY_HELP}",
        "invalid_request_error",
        code="invalid_api_key",
    )


def not_found_body(method: str, path: str) -> dict:
    return error_body(f"Invalid URL ({method} {path})", "invalid_request_error")


def too_large_body(limit: int) -> dict:
    return error_body(
        f"Request payload size exceeds the limit: {limit} bytes.", "invalid_request_error"
    )
