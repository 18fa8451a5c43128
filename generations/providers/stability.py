"""Stability AI's Stable Image API: Ultra, Core and Stable Diffusion 3.5, one call per image.

Facts relied on (platform.stability.ai/docs/api-reference, v2beta "Generate", read late
2026, as its response reference is quoted in public code; github:Stability-AI/ComfyUI-SAI_API
stability_api.py, Stability's own client of these endpoints; github:Stability-AI/
rest-api-support spec/v1.yaml for the account endpoints):

* ``POST {base}/v2beta/stable-image/generate/{ultra|core|sd3}`` (base
  ``https://api.stability.ai``), ``Authorization: Bearer sk-…``, multipart/form-data:
  ``prompt`` (required), ``aspect_ratio`` (16:9 1:1 21:9 2:3 3:2 4:5 5:4 9:16 9:21,
  default 1:1), ``negative_prompt``, ``seed``, ``output_format`` (png jpeg webp; sd3: png
  jpeg), ``style_preset``. Ultra takes ``image`` + ``strength`` (image-to-image); sd3
  takes ``model`` (sd3.5-large, sd3.5-large-turbo, sd3.5-medium …) and ``mode``
  (``image-to-image`` with ``image`` + ``strength``, where ``aspect_ratio`` is not sent:
  the image decides); Core takes no image. ComfyUI-SAI_API sends exactly this (``files=
  {"image": …}``, ``mode`` set and ``aspect_ratio`` dropped when an image is given,
  strength default 0.7 — also the default here, ``options["strength"]``).
* ``Accept: image/*`` answers the image bytes, with headers ``finish-reason`` (SUCCESS, or
  CONTENT_FILTERED: "successful generation, but output violated content policy" — the
  image is blurred) and ``seed``; ``Accept: application/json`` answers ``{image (base64),
  finish_reason, seed}``. Both are read.
* Errors are ``{id, name, errors: [str]}``: 400 invalid parameters (``bad_request``); 401
  ``unauthorized``; 402 ``payment_required`` (ComfyUI-SAI_API: "Not enough credits"); 403
  ``content_moderation`` ("Your request was flagged by our content moderation system");
  404 (unknown endpoint or model); 413 request larger than 10 MiB; 422 request rejected
  (e.g. a language other than English); 429 rate limited — "150 requests within a 10
  second period", then timed out for 60 seconds (v1 spec, "Rate limiting"); 500
  ``internal_error``. Only successful generations use credits.
* ``GET {base}/v1/user/balance`` → ``{"credits": float}`` (free; 401 for a bad key).
* Credits at $0.01: Ultra 8, SD 3.5 Large 6.5, Large Turbo 4, Medium 3.5, Core 3 per image
  (platform.stability.ai/pricing, as summarised June 2026): the catalog's default prices.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

import httpx
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations.failures import ErrorKind
from generations.providers.base import (
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    Usage,
)
from generations.providers.common import (
    clean_text,
    corrupt,
    excerpt,
    json_body,
    loads_or_none,
    retry_after_header,
    scrubbed,
    server_side,
    sniffed_image,
    text_of,
    transport_error,
)

ENDPOINTS = ("ultra", "core")  # upstream ids that are endpoints; sd3… ids go to /sd3
IMAGE_TO_IMAGE = ("ultra", "sd3")  # endpoints that take a reference image
DEFAULT_STRENGTH = 0.7
TIMED_OUT_SECONDS = 60.0  # "timed out for 60 seconds" after the 150-per-10-s limit
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's content moderation flagged this request. Rephrasing the prompt may help."
)


class StabilityProvider(Provider):
    """``base_url`` like https://api.stability.ai; the route's upstream model is ``ultra``,
    ``core`` or an SD3 model id (``sd3.5-large``)."""

    key_help = gettext_lazy(
        "Create a key at platform.stability.ai (Account, API keys); it starts with sk-. "
        "Routes name ultra, core or an SD 3.5 model (sd3.5-large, sd3.5-large-turbo, "
        "sd3.5-medium). Stability bills credits ($0.01 each) per successful image; the "
        'limit is 150 requests per 10 seconds. Option: {"strength": 0.7} for how far an '
        "image-to-image result may move from the reference (0–1)."
    )

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def test_connection(self) -> str:
        try:
            response = self._call("GET", f"{self.base_url}/v1/user/balance", accept="json")
            if not response.is_success:
                raise classify_error(response.status_code, response.content, response.headers)
            balance = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None
        credits = balance.get("credits") if isinstance(balance, dict) else None
        if not isinstance(credits, int | float):
            return _("The key works.")
        return _("The key works; the account has %(credits)s credits (about $%(dollars)s).") % {
            "credits": f"{credits:g}",
            "dollars": f"{credits / 100:.2f}",
        }

    # --- the call ----------------------------------------------------------------

    def _call(self, method: str, url: str, *, accept: str, **kwargs) -> httpx.Response:
        headers = {
            "authorization": f"Bearer {self.api_key}",
            "accept": "image/*" if accept == "image" else "application/json",
        }
        try:
            return self.client.request(
                method, url, headers=headers, timeout=self.timeouts.as_httpx(), **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if method == "GET":
                err.may_have_been_billed = False
            raise err from None

    def _generate(self, request: ImageRequest) -> ImageResult:
        endpoint, data, files = build_form(request, self.options)
        url = f"{self.base_url}/v2beta/stable-image/generate/{endpoint}"
        # Stability takes multipart/form-data only: text fields go as parts without a
        # filename, so the body is multipart even with no image (httpx would send
        # ``data`` alone url-encoded).
        parts = {name: (None, value.encode()) for name, value in data.items()} | files
        response = self._call("POST", url, accept="image", files=parts)
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        return parse_answer(response.content, response.headers, response.status_code)


# --- the request --------------------------------------------------------------------


def build_form(
    request: ImageRequest, options: Mapping[str, Any]
) -> tuple[str, dict[str, str], dict[str, tuple[str | None, bytes, str]]]:
    """The endpoint, the form fields and the files of one generation."""
    model = request.upstream_model.strip()
    endpoint = model if model in ENDPOINTS else "sd3" if model.startswith("sd3") else ""
    if not endpoint:
        raise ProviderError(
            ErrorKind.MODEL_GONE,
            _("Stability serves ultra, core and SD3 models, not %(model)s.") % {"model": model},
        )
    data = {"prompt": request.prompt, "output_format": "png"}
    if endpoint == "sd3":
        data["model"] = model
    files: dict[str, tuple[str | None, bytes, str]] = {}
    if not request.references:
        data["aspect_ratio"] = request.aspect_ratio
        return endpoint, data, files
    if endpoint not in IMAGE_TO_IMAGE or len(request.references) > 1:
        raise ProviderError(
            ErrorKind.PERMANENT,
            _("%(model)s takes at most one reference image (Core takes none).") % {"model": model},
        )
    strength = options.get("strength", DEFAULT_STRENGTH)
    if (
        isinstance(strength, bool)
        or not isinstance(strength, int | float)
        or not 0 <= strength <= 1
    ):
        raise ProviderError(
            ErrorKind.REFUSED,
            _('This Stability provider\'s options are wrong: "strength" is a number from 0 to 1.'),
        )
    if endpoint == "sd3":
        data["mode"] = "image-to-image"
    data["strength"] = f"{strength:g}"
    reference = request.references[0]
    extension = reference.mime_type.rpartition("/")[2]
    files["image"] = (f"reference.{extension}", reference.data, reference.mime_type)
    return endpoint, data, files


# --- the answer ---------------------------------------------------------------------


def parse_answer(body: bytes, headers: Mapping[str, str], http_status: int) -> ImageResult:
    """Image bytes with ``finish-reason``/``seed`` headers, or the JSON form of the same."""
    headers = {k.lower(): v for k, v in headers.items()}
    usage = Usage()  # Stability reports credits on the dashboard only: per-image prices bill
    if headers.get("content-type", "").startswith("application/json"):
        answer = _json_answer(body, http_status)
        data, reason, seed = answer["data"], answer["reason"], answer["seed"]
    else:
        data, reason, seed = body, headers.get("finish-reason", ""), headers.get("seed", "")
    reason = reason.strip().upper()
    if reason == "CONTENT_FILTERED":
        raise ProviderError(
            ErrorKind.BLOCKED,
            str(BLOCKED_MESSAGE),
            detail="finish-reason CONTENT_FILTERED (the image came back blurred)",
            http_status=http_status,
            may_have_been_billed=True,  # a "successful generation" by Stability's words
        )
    if reason not in ("", "SUCCESS"):
        raise ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider failed to make the image."),
            detail=f"finish-reason {excerpt(reason, 40)}",
            http_status=http_status,
            may_have_been_billed=True,
        )
    image: GeneratedImage = sniffed_image(data, usage, http_status)
    extra = {"seed": seed} if seed else {}
    request_id = headers.get("x-request-id", "")
    return ImageResult(
        images=(image,), usage=usage, response_id=request_id, http_status=http_status, extra=extra
    )


def _json_answer(body: bytes, http_status: int) -> dict:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise corrupt(f"unreadable JSON answer: {exc}", http_status) from None
    if not isinstance(answer, dict) or not isinstance(answer.get("image"), str):
        raise corrupt(f"JSON answer without image: {excerpt(repr(answer), 100)}", http_status)
    try:
        data = base64.b64decode(answer["image"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise corrupt(f"invalid base64 image: {exc}", http_status) from None
    return {
        "data": data,
        "reason": str(answer.get("finish_reason") or ""),
        "seed": str(answer.get("seed") or ""),
    }


# --- anything but a 2xx -------------------------------------------------------------


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None
) -> ProviderError:
    """Classify a ``{id, name, errors}`` answer."""
    data = loads_or_none(body)
    name = str(data.get("name") or "") if isinstance(data, dict) else ""
    said = _said(data) or excerpt(text_of(body), 200) or "(empty body)"
    upstream_id = str(data.get("id") or "") if isinstance(data, dict) else ""
    detail = (
        f"HTTP {status} {name}".rstrip()
        + f": {said}"
        + (f" (id {upstream_id})" if upstream_id else "")
    )
    lowered = said.lower()

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if name == "content_moderation" or (status in (403, 422) and "moderation" in lowered):
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if status == 402 or name == "payment_required":
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status == 429:
        delay = retry_after_header(headers)
        if delay is None and "timed out for" in lowered:
            delay = TIMED_OUT_SECONDS
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=delay,
        )
    if status == 404:
        return error_of(
            ErrorKind.MODEL_GONE,
            _("The provider does not serve this model: %(reason)s") % {"reason": said},
        )
    if status == 413:
        return error_of(
            ErrorKind.PERMANENT,
            _("The request was too large for the provider (is the reference image too big?)."),
        )
    if status == 422 and any(m in lowered for m in ("region", "country", "location")):
        return error_of(
            ErrorKind.REFUSED, _("The model is not available through this provider from here.")
        )
    if (err := server_side(status, error_of)) is not None:
        return err
    return error_of(
        ErrorKind.PERMANENT, _("The provider rejected the request: %(reason)s") % {"reason": said}
    )


def _said(data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    errors = data.get("errors")
    if isinstance(errors, list):
        return clean_text("; ".join(str(e) for e in errors[:3]))
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return clean_text(data[key])
    return ""
