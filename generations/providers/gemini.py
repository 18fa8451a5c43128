"""Google Gemini image models over the REST ``generateContent`` protocol.

Three pure functions carry the protocol knowledge and are tested on recorded
responses: :func:`build_request_body`, :func:`parse_response` (a 200) and
:func:`classify_error` (anything else, a ``google.rpc.Status`` envelope).
:class:`GeminiProvider` only adds the HTTP call and the transport failures.

The API key travels in the ``x-goog-api-key`` header, never in the URL, and is
scrubbed from every error before it leaves this module.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone
from PIL import Image

from generations.providers.base import (
    ErrorKind,
    GeneratedImage,
    ImageRequest,
    ImageResult,
    Provider,
    ProviderError,
    Usage,
)

# finishReason values meaning a safety/policy filter stopped the answer.
BLOCK_MESSAGES = {
    "SAFETY": "The request was blocked by the provider's safety filter.",
    "IMAGE_SAFETY": "The image was blocked by the provider's safety filter.",
    "PROHIBITED_CONTENT": "The provider refused this request because it may involve "
    "prohibited content.",
    "IMAGE_PROHIBITED_CONTENT": "The provider refused to make this image because it may "
    "show prohibited content.",
    "BLOCKLIST": "The request contains terms the provider does not allow.",
    "SPII": "The request was blocked because it may reveal sensitive personal information.",
    "RECITATION": "The result was withheld because it was too close to existing, possibly "
    "copyrighted, material.",
    "IMAGE_RECITATION": "The image was withheld because it was too close to existing, possibly "
    "copyrighted, material.",
}

# finishReason values meaning the model simply made no image.
NO_IMAGE_MESSAGES = {
    "NO_IMAGE": "The model did not produce an image. Rephrasing the prompt may help.",
    "IMAGE_OTHER": "The model did not produce an image. Rephrasing the prompt may help.",
    "MAX_TOKENS": "The model stopped before it produced an image (its output limit was reached).",
    "LANGUAGE": "The model does not support the language of the prompt.",
}

PROMPT_BLOCK_REASONS = {
    "SAFETY": "safety",
    "BLOCKLIST": "blocked terms",
    "PROHIBITED_CONTENT": "prohibited content",
    "IMAGE_SAFETY": "unsafe image",
    "OTHER": "unspecified reason",
}

IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/webp": (b"RIFF",),  # plus "WEBP" at offset 8, checked below
    "image/gif": (b"GIF87a", b"GIF89a"),
}

TEXT_EXCERPT_CHARS = 160
UPSTREAM_MESSAGE_CHARS = 300
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class GeminiProvider(Provider):
    """``POST {base_url}/v1beta/models/{model}:generateContent`` for one image."""

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            # Relays sometimes echo the credential back; it must not reach a page or log.
            raise _scrubbed(err, self.api_key) from None

    def endpoint(self, upstream_model: str) -> str:
        model = upstream_model.removeprefix("models/")
        return f"{self.base_url}/v1beta/models/{model}:generateContent"

    def _generate(self, request: ImageRequest) -> ImageResult:
        try:
            response = self.client.post(
                self.endpoint(request.upstream_model),
                json=build_request_body(request),
                headers={"x-goog-api-key": self.api_key, "accept": "application/json"},
                timeout=self.timeouts.as_httpx(),
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            # `from None`: the httpx exception holds the request and so the key header.
            raise transport_error(exc) from None
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        return parse_response(_json_body(response), http_status=response.status_code)


def build_request_body(request: ImageRequest) -> dict:
    """The JSON body of one ``generateContent`` call: prompt first, then references."""
    parts: list[dict] = [{"text": request.prompt}]
    for ref in request.references:
        parts.append(
            {
                "inlineData": {
                    "mimeType": ref.mime_type,
                    "data": base64.b64encode(ref.data).decode("ascii"),
                }
            }
        )
    image_config: dict[str, str] = {"aspectRatio": request.aspect_ratio}
    if request.image_size is not None:
        image_config["imageSize"] = request.image_size
    return {
        "contents": [{"role": "user", "parts": parts}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config},
    }


# --- a 200 ------------------------------------------------------------------


def parse_response(body: Any, http_status: int = 200) -> ImageResult:
    """Turn a ``GenerateContentResponse`` into images, or the reason there are none.

    Google bills the tokens of every 200, so the errors raised here carry the
    parsed usage and ``may_have_been_billed``.
    """
    if not isinstance(body, dict):
        raise _corrupt(f"response body is {type(body).__name__}, not an object", http_status)
    try:
        return _parse(body, http_status)
    except (AttributeError, TypeError, KeyError) as exc:  # valid JSON, wrong shape
        detail = f"unexpected response shape: {type(exc).__name__}: {exc}"
        raise _corrupt(detail, http_status) from None


def _parse(body: dict, http_status: int) -> ImageResult:
    if "error" in body and "candidates" not in body:  # a relay wrapping an error in a 200
        code = body["error"].get("code") if isinstance(body["error"], dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        raise classify_error(status, json.dumps(body), {})
    usage = usage_from_metadata(body.get("usageMetadata"))
    billed = {"http_status": http_status, "may_have_been_billed": True, "usage": usage}
    candidates = [c for c in body.get("candidates") or [] if isinstance(c, dict)]
    _raise_if_blocked(body.get("promptFeedback") or {}, candidates, billed)

    images: list[GeneratedImage] = []
    texts: list[str] = []
    for part in _answer_parts(candidates):
        if isinstance(part.get("text"), str) and part["text"].strip():
            texts.append(part["text"].strip())
        inline = part.get("inlineData")
        if isinstance(inline, dict) and str(inline.get("mimeType", "")).startswith("image/"):
            images.append(_decode_image(inline, usage, http_status))
    text = "\n".join(texts)
    reasons = [str(c.get("finishReason") or "") for c in candidates]
    if not images:
        raise _no_image(candidates, reasons, text, billed)
    return ImageResult(
        images=tuple(images),
        usage=usage,
        text=text,
        model_version=str(body.get("modelVersion") or ""),
        response_id=str(body.get("responseId") or ""),
        http_status=http_status,
        extra={"finish_reasons": reasons},
    )


def usage_from_metadata(meta: Any) -> Usage:
    """``usageMetadata`` → :class:`Usage`; absent counts are 0.

    ``candidatesTokenCount`` covers text and image output but not thinking
    (``thoughtsTokenCount``), which Google reports and bills separately.
    """
    if not isinstance(meta, dict):
        return Usage()
    image_tokens = sum(
        _int(d.get("tokenCount"))
        for d in meta.get("candidatesTokensDetails") or []
        if isinstance(d, dict) and d.get("modality") == "IMAGE"
    )
    return Usage(
        input_tokens=_int(meta.get("promptTokenCount")),
        output_text_tokens=max(_int(meta.get("candidatesTokenCount")) - image_tokens, 0),
        output_image_tokens=image_tokens,
        thinking_tokens=_int(meta.get("thoughtsTokenCount")),
        total_tokens=_int(meta.get("totalTokenCount")),
    )


def _raise_if_blocked(feedback: dict, candidates: list[dict], billed: dict) -> None:
    if block := str(feedback.get("blockReason") or ""):
        reason = PROMPT_BLOCK_REASONS.get(block, block.replace("_", " ").lower())
        raise ProviderError(
            ErrorKind.BLOCKED,
            f"Your prompt was blocked by the provider's safety filter ({reason}).",
            detail=f"promptFeedback.blockReason={block}",
            **billed,
        )
    for candidate in candidates:
        if (reason := candidate.get("finishReason")) in BLOCK_MESSAGES:
            raise ProviderError(
                ErrorKind.BLOCKED,
                BLOCK_MESSAGES[reason],
                detail=_finish_detail(candidate),
                **billed,
            )


def _answer_parts(candidates: list[dict]):
    """Parts of the final answer; Gemini 3 Pro's interim ``thought`` parts are not it."""
    for candidate in candidates:
        parts = (candidate.get("content") or {}).get("parts") or []
        for part in parts:
            if isinstance(part, dict) and not part.get("thought"):
                yield part


def _no_image(candidates, reasons, text: str, billed: dict) -> ProviderError:
    odd = next((r for r in reasons if r and r != "STOP"), "")
    detail = "; ".join(_finish_detail(c) for c in candidates) or "no candidates"
    if odd:
        message = NO_IMAGE_MESSAGES.get(
            odd, f"The model did not produce an image ({odd.replace('_', ' ').lower()})."
        )
    elif text:
        message = f'The model answered with text only: "{_excerpt(text, TEXT_EXCERPT_CHARS)}"'
    elif candidates:
        message = "The model returned neither an image nor text."
    else:
        message = "The provider returned no result for this prompt."
    return ProviderError(ErrorKind.NO_IMAGE, message, detail=detail, **billed)


def _finish_detail(candidate: dict) -> str:
    detail = f"finishReason={candidate.get('finishReason') or 'none'}"
    if candidate.get("finishMessage"):
        detail += f": {_excerpt(str(candidate['finishMessage']), UPSTREAM_MESSAGE_CHARS)}"
    return detail


def _decode_image(inline: dict, usage: Usage, http_status: int) -> GeneratedImage:
    mime = str(inline["mimeType"]).split(";")[0].strip().lower()
    mime = "image/jpeg" if mime == "image/jpg" else mime
    try:
        data = base64.b64decode(inline.get("data") or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _corrupt(f"invalid base64 image data: {exc}", http_status, usage) from None
    problem = image_problem(data, mime)
    if problem:
        raise _corrupt(problem, http_status, usage)
    return GeneratedImage(data=data, mime_type=mime)


def image_problem(data: bytes, mime_type: str) -> str:
    """Why ``data`` is not a whole image of ``mime_type`` ("" when it is)."""
    signatures = IMAGE_SIGNATURES.get(mime_type)
    if signatures is None:
        return f"unsupported image type {mime_type}"
    if not data:
        return "empty image data"
    if not data.startswith(signatures) or (mime_type == "image/webp" and data[8:12] != b"WEBP"):
        return f"bytes are not a {mime_type} image (starts with {data[:8]!r})"
    try:
        # The signature already pinned the format; verify() walks the chunks (PNG CRCs)
        # but reads no pixels, and for JPEG checks nothing: only a decode finds a cut-off
        # file. verify() leaves the image unusable, hence the second open.
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > settings.NANOWEB_MAX_IMAGE_PIXELS:
                return f"{mime_type} image of {im.width}×{im.height} pixels is too large to decode"
            im.load()
    except Exception as exc:  # Pillow raises many types for damaged files
        return f"damaged {mime_type} image: {type(exc).__name__}: {exc}"
    return ""


def _corrupt(detail: str, http_status: int | None, usage: Usage | None = None) -> ProviderError:
    return ProviderError(
        ErrorKind.CORRUPT,
        "The provider sent back a damaged response.",
        detail=detail,
        http_status=http_status,
        may_have_been_billed=True,
        usage=usage,
    )


def _json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = response.headers.get("content-type", "no content-type")
        raise _corrupt(
            f"unreadable body ({kind}, {len(response.content)} bytes): {exc}",
            response.status_code,
        ) from None


# --- anything but a 2xx -----------------------------------------------------


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None
) -> ProviderError:
    """Classify a non-2xx answer from its ``google.rpc.Status`` envelope (or status alone)."""
    error = _error_envelope(body)
    rpc_status = str(error.get("status") or "")
    # Only Google's own message is fit for users; a proxy's HTML page goes to the detail.
    upstream = _clean(str(error.get("message") or ""))
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reasons = [str(d.get("reason") or "") for d in details if d.get("@type") == ERROR_INFO]
    quota_ids = [
        f"{v.get('quotaId', '')} {v.get('quotaMetric', '')}".strip()
        for d in details
        if d.get("@type") == QUOTA_FAILURE
        for v in d.get("violations") or []
        if isinstance(v, dict)
    ]
    said = upstream or _excerpt(_text_of(body), 200) or "(empty body)"
    detail = _error_detail(f"HTTP {status} {rpc_status}".strip(), said, reasons, quota_ids)

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        if any("perday" in q.lower().replace("_", "") for q in quota_ids):
            return error_of(
                ErrorKind.KEY_EXHAUSTED, "The provider key has used up its daily quota."
            )
        delay = _retry_delay(details)
        if delay is None:
            delay = _retry_after_header(headers)
        return error_of(
            ErrorKind.RATE_LIMITED,
            "The provider is receiving too many requests right now.",
            retry_after=delay,
        )
    if (
        any(r.startswith("API_KEY_") for r in reasons)
        or "api key not valid" in upstream.lower()
        or status in (401, 403)
    ):
        return error_of(ErrorKind.KEY_INVALID, "The provider rejected the API key.")
    if rpc_status == "FAILED_PRECONDITION":
        # "User location is not supported", "free tier not available in your country,
        # enable billing": the Google project or the server's region, not the key itself,
        # so the key stays enabled. Retrying cannot help until an admin fixes the account;
        # there is no class yet for "fail over but never retry here", so: permanent.
        message = "The provider is not available to this account or from this location"
        return error_of(
            ErrorKind.PERMANENT, f"{message}: {upstream}" if upstream else f"{message}."
        )
    if status == 504:
        return error_of(
            ErrorKind.SLOW, "The provider took too long to answer.", may_have_been_billed=True
        )
    if status in (408, 409) or (status >= 500 and status != 501):
        return error_of(ErrorKind.TRANSIENT, _transient_message(status))
    message = "The provider rejected the request"
    if status == 413:
        message = "The request was too large for the provider (are the reference images too big?)"
    return error_of(ErrorKind.PERMANENT, f"{message}: {upstream}" if upstream else f"{message}.")


def _error_detail(head: str, said: str, reasons: list[str], quota_ids: list[str]) -> str:
    detail = f"{head}: {said}"
    if reasons:
        detail += f" [reason: {', '.join(reasons)}]"
    if quota_ids:
        detail += f" [quota: {'; '.join(quota_ids)}]"
    return detail


def _transient_message(status: int) -> str:
    if status == 503:
        return "The provider is overloaded right now."
    if status == 500:
        return "The provider had an internal error."
    return "The provider is unavailable right now."


def _error_envelope(body: bytes | str) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, TypeError):
        return {}
    if isinstance(data, list) and data:  # some proxies wrap the envelope in a list
        data = data[0]
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def _retry_delay(details: list[dict]) -> float | None:
    """Seconds from ``RetryInfo.retryDelay`` (a protobuf Duration: "30s", "1.5s")."""
    for d in details:
        if d.get("@type") == RETRY_INFO:
            match = re.fullmatch(r"\s*(\d+(?:\.\d*)?)s?\s*", str(d.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    """Relays put the delay in ``Retry-After`` instead (seconds or an HTTP date)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


# --- the wire itself --------------------------------------------------------


def transport_error(exc: Exception) -> ProviderError:
    """Classify an httpx failure by how far the request got before it broke."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderError(
            ErrorKind.SLOW,
            "The provider took too long to answer.",
            detail=detail,
            may_have_been_billed=True,
        )
    if isinstance(exc, httpx.DecodingError):
        return _corrupt(detail, None)
    unreached = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ProxyError,
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
    )
    if isinstance(exc, unreached):
        return ProviderError(
            ErrorKind.TRANSIENT, "The provider could not be reached.", detail=detail
        )
    # Write timeouts, dropped connections, protocol errors: the prompt may have
    # reached Google, which may bill it.
    return ProviderError(
        ErrorKind.TRANSIENT,
        "The connection to the provider broke off.",
        detail=detail,
        may_have_been_billed=True,
    )


def _scrubbed(err: ProviderError, secret: str) -> ProviderError:
    if not secret or (secret not in err.message and secret not in err.detail):
        return err
    return ProviderError(
        err.kind,
        err.message.replace(secret, "[key]"),
        detail=err.detail.replace(secret, "[key]"),
        http_status=err.http_status,
        retry_after=err.retry_after,
        may_have_been_billed=err.may_have_been_billed,
        usage=err.usage,
    )


# --- small helpers ----------------------------------------------------------


def _int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def _clean(text: str) -> str:
    return _excerpt(" ".join(text.split()), UPSTREAM_MESSAGE_CHARS)


def _excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _text_of(body: bytes | str) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body or ""
