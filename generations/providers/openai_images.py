"""OpenAI's Images API, and relays that speak it.

Without references: ``POST {base_url}/images/generations`` with a JSON body.
With references: ``POST {base_url}/images/edits`` as multipart form data, the
images as repeated ``image[]`` parts (``image`` for dall-e-2, which takes one).
The key travels as ``Authorization: Bearer``; ``base_url`` ends in ``/v1``.

Sizes. OpenAI makes a few fixed sizes, so the requested aspect ratio becomes
the size whose ratio is nearest (by ratio, not by width: 5:4 is nearer 3:2
than 1:1). Unknown model names (relays) are treated as gpt-image models.

==========================  ============  =============  =============
aspect ratio                gpt-image-*   dall-e-3       dall-e-2
==========================  ============  =============  =============
1:1                         1024x1024     1024x1024      1024x1024
4:5                         1024x1536     1024x1024      1024x1024
5:4                         1536x1024     1024x1024      1024x1024
3:4, 2:3, 9:16              1024x1536     1024x1792      1024x1024
4:3, 3:2, 16:9, 21:9        1536x1024     1792x1024      1024x1024
==========================  ============  =============  =============

Quality. OpenAI images come in one resolution class, so nanoweb's size steps
become quality steps, sent only to gpt-image models (dall-e's "standard"/"hd"
is left at its default): 1K → ``low``, 2K → ``medium``, 4K → ``high``; a
model without sizes (``image_size`` None) sends none, leaving OpenAI's
``auto``. Low/medium/high keep the cost rising with the step the user picked,
which ``auto`` (often ``high``) would not.

``response_format=b64_json`` is sent to dall-e models only: gpt-image models
always answer inline and refuse the parameter, and so do some relays for models
they do not know. An answer carrying ``url`` instead (some relays; LocalAI, which
answers with a URL on its own address unless asked for ``b64_json``) is fetched:
directly when the URL is on the provider's own origin, through :mod:`safe_fetch`
otherwise.

Usage: ``usage.input_tokens`` (text and image input together: :class:`Usage`
has one input rate; the split is kept in ``ImageResult.extra``) and
``output_tokens`` as image output, unless ``output_tokens_details`` splits
image from text. dall-e models report no usage; price their routes per image.

Relays' full pools: One API / New API answer "当前分组上游负载已饱和，请稍后再试" (429) when
every channel of the group is rate limited upstream; that is ``transient`` (fail over), not
this key's rate limit (see :data:`common.RELAY_SATURATED` for the sources). Their "user
quota is not enough" (403 ``insufficient_user_quota``, or "用户额度不足") is the relay
account out of credit: ``out_of_credit``, not a bad key.

Refusals by region: OpenAI answers a call from a country it does not serve with
403 ``{"error": {"code": "unsupported_country_region_territory", "type":
"request_forbidden", "message": "Country, region, or territory not supported"}}``
(as reported verbatim in home-assistant/core#120072 and continuedev/continue#11449;
relays such as one-api pass it on, songquanpeng/one-api#1692). The key is fine and
retrying here cannot help, but another route can: ``refused``, not ``key_invalid``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Mapping
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
    looks_like_image_model,
)
from generations.providers.common import (
    IMAGE_SIGNATURES,
    SATURATED_MESSAGE,
    as_int,
    clean_text,
    corrupt,
    excerpt,
    fetched,
    image_problem,
    json_body,
    origin_fetcher,
    relay_saturated,
    retry_after_header,
    scrubbed,
    text_of,
    transient_message,
    transport_error,
)

GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALL_E_2_SIZES = ("1024x1024",)
QUALITY = {"1K": "low", "2K": "medium", "4K": "high"}

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}
MAX_FETCHED_IMAGE_BYTES = 50 * 1024 * 1024  # OpenAI's own limit for an image file

RATE_LIMIT_CODES = frozenset({"rate_limit_exceeded", "requests", "tokens"})
NO_CREDIT_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
# One API's "user quota is not enough" (403, relay/controller/helper.go) and the Chinese
# balance texts of its family ("用户额度不足", "令牌额度不足" in model/token.go; "余额不足"):
# the account at the relay has no money left, the key itself is fine.
RELAY_NO_CREDIT_CODES = frozenset({"insufficient_user_quota"})
RELAY_NO_CREDIT_TEXTS = ("额度不足", "余额不足")
KEY_CODES = frozenset({"invalid_api_key", "account_deactivated", "invalid_organization"})
REFUSED_CODES = frozenset({"unsupported_country_region_territory"})
MODEL_GONE_CODES = frozenset({"model_not_found"})
BLOCK_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's safety system rejected this request. Rephrasing the prompt may help."
)


class OpenAIImagesProvider(Provider):
    key_help = gettext_lazy(
        "OpenAI: https://platform.openai.com/api-keys (sk-…), base URL "
        "https://api.openai.com/v1; GPT Image models need a verified organization. A relay "
        "or a local server (vLLM-Omni, LocalAI) with an OpenAI-compatible /v1/images "
        "endpoint: its /v1 base URL and key (any text for a server without keys). Test "
        "connection lists the models (free)."
    )
    """One image per call from ``/images/generations`` or ``/images/edits``."""

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def list_models(self) -> list[str]:
        """``GET {base_url}/models`` (``{"data": [{"id": …}]}``), keeping image models."""
        try:
            try:
                response = self.client.get(
                    f"{self.base_url}/models",
                    headers={
                        "authorization": f"Bearer {self.api_key}",
                        "accept": "application/json",
                    },
                    timeout=self.timeouts.as_httpx(),
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise transport_error(exc) from None
            if not response.is_success:
                raise classify_error(response.status_code, response.content, response.headers)
            data = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None
        entries = data.get("data") if isinstance(data, dict) else None
        return (
            [
                str(e["id"])
                for e in entries
                if isinstance(e, dict) and e.get("id") and looks_like_image_model(str(e["id"]))
            ]
            if isinstance(entries, list)
            else []
        )

    def _generate(self, request: ImageRequest) -> ImageResult:
        path, body = build_request(request)
        try:
            response = self.client.post(
                f"{self.base_url}{path}",
                **body,
                headers={"authorization": f"Bearer {self.api_key}", "accept": "application/json"},
                timeout=self.timeouts.as_httpx(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_error(exc) from None  # `from None`: the request holds the key
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        # A URL on the admin's own base URL (LocalAI answers http://its-host/generated-images/…)
        # is fetched directly; any other goes through safe_fetch.
        fetch = origin_fetcher(
            self.base_url,
            self.client,
            {"authorization": f"Bearer {self.api_key}"},
            timeout=self.timeouts.read,
        )
        return parse_response(
            json_body(response),
            http_status=response.status_code,
            response_id=response.headers.get("x-request-id", ""),
            fetch=fetch,
        )


# --- the request --------------------------------------------------------------


def build_request(request: ImageRequest) -> tuple[str, dict]:
    """The path and the httpx body arguments (``json`` or ``data`` + ``files``) of one call."""
    fields = request_fields(request)
    if not request.references:
        return "/images/generations", {"json": fields}
    name = "image" if _model_name(request.upstream_model).startswith("dall-e-2") else "image[]"
    files = [
        (name, (f"reference-{i}.{EXTENSIONS.get(ref.mime_type, 'png')}", ref.data, ref.mime_type))
        for i, ref in enumerate(request.references, start=1)
    ]
    if request.mask is not None:
        files.append(("mask", ("mask.png", request.mask.data, request.mask.mime_type)))
    return "/images/edits", {"data": {k: str(v) for k, v in fields.items()}, "files": files}


def request_fields(request: ImageRequest) -> dict[str, str | int]:
    """The parameters both endpoints share (see the module docstring for the tables)."""
    name = _model_name(request.upstream_model)
    fields: dict[str, str | int] = {
        "model": request.upstream_model,
        "prompt": request.prompt,
        "n": 1,
        "size": openai_size(request.upstream_model, request.aspect_ratio),
    }
    if "gpt-image" in name and request.image_size in QUALITY:
        fields["quality"] = QUALITY[request.image_size]
    if name.startswith("dall-e"):
        fields["response_format"] = "b64_json"
    return fields


def openai_size(upstream_model: str, aspect_ratio: str) -> str:
    """The model's size whose width/height ratio is nearest ``aspect_ratio`` (by log ratio)."""
    name = _model_name(upstream_model)
    sizes = GPT_IMAGE_SIZES
    if name.startswith("dall-e-3"):
        sizes = DALL_E_3_SIZES
    elif name.startswith("dall-e-2"):
        sizes = DALL_E_2_SIZES
    try:
        width, height = (float(side) for side in aspect_ratio.split(":"))
        wanted = math.log(width / height)
    except (ValueError, ZeroDivisionError):
        raise ProviderError(
            ErrorKind.PERMANENT, f"Unsupported aspect ratio {aspect_ratio!r}."
        ) from None

    def distance(size: str) -> float:
        w, h = (int(side) for side in size.split("x"))
        return abs(math.log(w / h) - wanted)

    return min(sizes, key=distance)


def _model_name(upstream_model: str) -> str:
    """``openai/gpt-image-1`` (as relays spell it) → ``gpt-image-1``."""
    return upstream_model.rsplit("/", 1)[-1].lower()


# --- a 200 ----------------------------------------------------------------------


def parse_response(
    body: Any,
    *,
    http_status: int = 200,
    response_id: str = "",
    fetch: Callable[[str], bytes] | None = None,
) -> ImageResult:
    """``{"created", "data": [{"b64_json" | "url", "revised_prompt"?}], "usage"?}`` → images.

    The image was made (and billed) by the time a 200 arrives, so every error
    raised here carries ``may_have_been_billed`` and the parsed usage.
    """
    if not isinstance(body, dict):
        raise corrupt(f"response body is {type(body).__name__}, not an object", http_status)
    if "error" in body and "data" not in body:  # a relay wrapping an error in a 200
        raise classify_error(502, json.dumps(body), {})
    usage = usage_from(body.get("usage"))
    data = body.get("data")
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        raise corrupt(
            f"response has no data list (data={excerpt(repr(data), 80)})", http_status, usage
        )
    if not data:
        raise ProviderError(
            ErrorKind.NO_IMAGE,
            _("The model did not produce an image. Rephrasing the prompt may help."),
            detail="200 with an empty data list",
            http_status=http_status,
            may_have_been_billed=True,
            usage=usage,
        )
    images = tuple(_image_of(item, fetch, usage, http_status) for item in data)
    texts = [
        item["revised_prompt"].strip()
        for item in data
        if isinstance(item.get("revised_prompt"), str)
    ]
    extra = {k: body[k] for k in ("size", "quality", "output_format", "background") if k in body}
    if isinstance(body.get("usage"), dict) and "input_tokens_details" in body["usage"]:
        extra["input_tokens_details"] = body["usage"]["input_tokens_details"]
    return ImageResult(
        images=images,
        usage=usage,
        text="\n".join(t for t in texts if t),
        model_version=str(body.get("model") or ""),
        response_id=response_id,
        http_status=http_status,
        extra=extra,
    )


def usage_from(usage: Any) -> Usage:
    """OpenAI's ``usage`` → :class:`Usage`; output is image output unless detailed otherwise."""
    if not isinstance(usage, dict):
        return Usage()
    output = as_int(usage.get("output_tokens"))
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and "image_tokens" in details:
        image, text = as_int(details.get("image_tokens")), as_int(details.get("text_tokens"))
    else:
        image, text = output, 0
    input_tokens = as_int(usage.get("input_tokens"))
    input_details = usage.get("input_tokens_details")
    return Usage(
        input_tokens=input_tokens,
        input_image_tokens=as_int(input_details.get("image_tokens"))
        if isinstance(input_details, dict)
        else 0,
        output_text_tokens=text,
        output_image_tokens=image,
        total_tokens=as_int(usage.get("total_tokens")) or input_tokens + output,
    )


def _image_of(item: dict, fetch, usage: Usage, http_status: int) -> GeneratedImage:
    if isinstance(item.get("b64_json"), str):
        try:
            data = base64.b64decode(item["b64_json"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise corrupt(f"invalid base64 image data: {exc}", http_status, usage) from None
    elif isinstance(item.get("url"), str):
        if fetch is None:
            raise corrupt(
                "image sent as a URL where only inline data is accepted", http_status, usage
            )
        data = fetched(item["url"], fetch, usage, http_status)
    else:
        raise corrupt(f"data item has neither b64_json nor url: {sorted(item)}", http_status, usage)
    # OpenAI names no MIME type (output_format is optional): the bytes say what they are.
    mime = next((m for m, signs in IMAGE_SIGNATURES.items() if data.startswith(signs)), "")
    problem = image_problem(data, mime) if mime else "bytes are not a PNG, JPEG or WebP image"
    if problem:
        raise corrupt(f"{problem} ({len(data)} bytes)", http_status, usage)
    return GeneratedImage(data=data, mime_type=mime)


# --- anything but a 2xx ---------------------------------------------------------


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None
) -> ProviderError:
    """Classify ``{"error": {"message", "type", "param", "code"}}`` (or the status alone).

    The error code decides before the status does: relays pass OpenAI's codes on
    under statuses of their own choosing.
    """
    error = _error_envelope(body)
    code, error_type = str(error.get("code") or ""), str(error.get("type") or "")
    tags = {code, error_type}
    upstream = clean_text(str(error.get("message") or ""))
    said = upstream or excerpt(text_of(body), 200) or "(empty body)"
    detail = f"HTTP {status} {code or error_type}".rstrip() + f": {said}"

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if relay_saturated(upstream, text_of(body)):  # One API / New API: the pool is full
        return error_of(
            ErrorKind.TRANSIENT, str(SATURATED_MESSAGE), retry_after=retry_after(headers)
        )
    if tags & RELAY_NO_CREDIT_CODES or any(t in upstream for t in RELAY_NO_CREDIT_TEXTS):
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if tags & NO_CREDIT_CODES:
        return error_of(
            ErrorKind.KEY_EXHAUSTED, _("The provider key has run out of quota or credit.")
        )
    if tags & RATE_LIMIT_CODES or status == 429:
        if "per day" in upstream.lower() or "(rpd)" in upstream.lower():
            return error_of(
                ErrorKind.KEY_EXHAUSTED, _("The provider key has used up its daily quota.")
            )
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=retry_after(headers),
        )
    if tags & MODEL_GONE_CODES:  # 404 "The model `x` does not exist or you do not have access"
        message = "The provider no longer serves this model"
        return error_of(
            ErrorKind.MODEL_GONE, f"{message}: {upstream}" if upstream else f"{message}."
        )
    if tags & REFUSED_CODES or "location is not supported" in upstream.lower():
        # Google's "User location is not supported for the API use." passed on by a relay
        message = "The provider is not available from this location"
        return error_of(ErrorKind.REFUSED, f"{message}: {upstream}" if upstream else f"{message}.")
    if tags & KEY_CODES or status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if tags & BLOCK_CODES:
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if status == 504:
        return error_of(
            ErrorKind.SLOW, _("The provider took too long to answer."), may_have_been_billed=True
        )
    if status in (408, 409) or (status >= 500 and status != 501):
        return error_of(ErrorKind.TRANSIENT, transient_message(status))
    message = "The provider rejected the request"
    if status == 413:
        message = "The request was too large for the provider (are the reference images too big?)"
    return error_of(ErrorKind.PERMANENT, f"{message}: {upstream}" if upstream else f"{message}.")


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait: ``retry-after-ms`` (OpenAI's), else ``retry-after`` (seconds or a date)."""
    millis = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after-ms"), None)
    try:
        return max(float(millis), 0.0) / 1000 if millis else retry_after_header(headers)
    except ValueError:
        return retry_after_header(headers)


def _error_envelope(body: bytes | str) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, TypeError):
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):  # some relays: {"error": "message"}
        return {"message": error}
    return error if isinstance(error, dict) else {}
