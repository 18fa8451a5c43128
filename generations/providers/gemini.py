"""Google Gemini image models over the REST ``generateContent`` protocol.

Three pure functions carry the protocol knowledge and are tested on recorded
responses: :func:`build_request_body`, :func:`parse_response` (a 200) and
:func:`classify_error` (anything else, a ``google.rpc.Status`` envelope).
:class:`GeminiProvider` only adds the HTTP call and the transport failures.

The API key travels in the ``x-goog-api-key`` header, never in the URL, and is
scrubbed from every error before it leaves this module.

Thinking levels go in ``generationConfig.thinkingConfig.thinkingLevel`` (minimal / medium /
high where the model takes them) and Search grounding as ``tools: [{"googleSearch": {}}]``;
a grounded answer carries ``candidates[].groundingMetadata`` (``webSearchQueries``,
``groundingChunks[].web.{uri,title}``), and Gemini 3 models bill each search query
(ai.google.dev/gemini-api/docs/image-generation, /google-search, /pricing).

``models.list`` (``GET /v1beta/models``) is paginated with ``pageSize`` (at most 1000)
and ``pageToken``/``nextPageToken``; its entries carry ``name`` ("models/<id>") and
``supportedGenerationMethods`` but no output modalities, so image models are known by
their ids (ai.google.dev/api/models#method:-models.list). A ``generateContent`` for an id
the key cannot see, or that was shut down, answers 404 NOT_FOUND "models/<id> is not
found for API version v1beta, or is not supported for generateContent".

Relays in front of Gemini (One API / New API) answer "当前分组上游负载已饱和，请稍后再试" when
their pool is saturated, usually in OpenAI's error envelope even on the Gemini-native path:
``transient`` (fail over), see :data:`common.RELAY_SATURATED`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import replace
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
    SATURATED_MESSAGE,
    UPSTREAM_MESSAGE_CHARS,
    as_int,
    clean_text,
    corrupt,
    excerpt,
    image_problem,
    json_body,
    relay_saturated,
    retry_after_header,
    scrubbed,
    text_of,
    transient_message,
    transport_error,
)

# finishReason values meaning a safety/policy filter stopped the answer.
BLOCK_MESSAGES = {
    "SAFETY": gettext_lazy("The request was blocked by the provider's safety filter."),
    "IMAGE_SAFETY": gettext_lazy("The image was blocked by the provider's safety filter."),
    "PROHIBITED_CONTENT": gettext_lazy(
        "The provider refused this request because it may involve prohibited content."
    ),
    "IMAGE_PROHIBITED_CONTENT": gettext_lazy(
        "The provider refused to make this image because it may show prohibited content."
    ),
    "BLOCKLIST": gettext_lazy("The request contains terms the provider does not allow."),
    "SPII": gettext_lazy(
        "The request was blocked because it may reveal sensitive personal information."
    ),
    "RECITATION": gettext_lazy(
        "The result was withheld because it was too close to existing, possibly "
        "copyrighted, material."
    ),
    "IMAGE_RECITATION": gettext_lazy(
        "The image was withheld because it was too close to existing, possibly "
        "copyrighted, material."
    ),
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

TEXT_EXCERPT_CHARS = 160
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class GeminiProvider(Provider):
    """``POST {base_url}/v1beta/models/{model}:generateContent`` for one image."""

    key_help = gettext_lazy(
        "Google AI Studio → Get API key (https://aistudio.google.com/apikey); a key looks "
        "like AIza…. Image models need billing on the key's project. Its limits (requests "
        "per minute and per day) depend on the project's tier, shown in AI Studio → Usage: "
        "enter them as RPM and RPD here. A relay that speaks generateContent: its base URL "
        "and the key from its dashboard. Test connection lists the key's models (free)."
    )

    def generate(self, request: ImageRequest) -> ImageResult:
        try:
            return self._generate(request)
        except ProviderError as err:
            # Relays sometimes echo the credential back; it must not reach a page or log.
            raise scrubbed(err, self.api_key) from None

    def list_models(self) -> list[str]:
        """``GET {base_url}/v1beta/models``, every page (``pageToken`` → ``nextPageToken``),
        keeping the image models that take ``generateContent``."""
        try:
            return self._list_models()
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def _list_models(self) -> list[str]:
        found, token = [], None
        for _page in range(MAX_MODEL_PAGES):
            params = {"pageSize": 1000, **({"pageToken": token} if token else {})}
            try:
                response = self.client.get(
                    f"{self.base_url}/v1beta/models",
                    params=params,
                    headers={"x-goog-api-key": self.api_key, "accept": "application/json"},
                    timeout=self.timeouts.as_httpx(),
                )
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise transport_error(exc) from None
            if not response.is_success:
                raise classify_error(response.status_code, response.content, response.headers)
            body = json_body(response)
            found += parse_model_list(body)
            token = body.get("nextPageToken") if isinstance(body, dict) else None
            if not token:
                break
        return found

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
        return parse_response(json_body(response), http_status=response.status_code)


MAX_MODEL_PAGES = 20


def parse_model_list(body: Any) -> list[str]:
    """Image model ids (without ``models/``) from one page of ``models.list``."""
    models = body.get("models") if isinstance(body, dict) else None
    ids = []
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name") or "").removeprefix("models/")
        methods = entry.get("supportedGenerationMethods") or []
        if name and "generateContent" in methods and looks_like_image_model(name):
            ids.append(name)
    return ids


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
    config: dict = {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": image_config}
    if request.thinking_level:
        config["thinkingConfig"] = {"thinkingLevel": request.thinking_level}
    body: dict = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
    if request.grounding:
        body["tools"] = [{"googleSearch": {}}]
    return body


# --- a 200 ------------------------------------------------------------------


def parse_response(body: Any, http_status: int = 200) -> ImageResult:
    """Turn a ``GenerateContentResponse`` into images, or the reason there are none.

    Google bills the tokens of every 200, so the errors raised here carry the
    parsed usage and ``may_have_been_billed``.
    """
    if not isinstance(body, dict):
        raise corrupt(f"response body is {type(body).__name__}, not an object", http_status)
    try:
        return _parse(body, http_status)
    except (AttributeError, TypeError, KeyError) as exc:  # valid JSON, wrong shape
        detail = f"unexpected response shape: {type(exc).__name__}: {exc}"
        raise corrupt(detail, http_status) from None


def _parse(body: dict, http_status: int) -> ImageResult:
    if "error" in body and "candidates" not in body:  # a relay wrapping an error in a 200
        code = body["error"].get("code") if isinstance(body["error"], dict) else None
        status = code if isinstance(code, int) and 400 <= code < 600 else 502
        raise classify_error(status, json.dumps(body), {})
    candidates = [c for c in body.get("candidates") or [] if isinstance(c, dict)]
    grounding = grounding_of(candidates)
    usage = replace(
        usage_from_metadata(body.get("usageMetadata")),
        search_queries=len(grounding.get("queries", [])),
    )
    billed = {"http_status": http_status, "may_have_been_billed": True, "usage": usage}
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
        extra={"finish_reasons": reasons, "grounding": grounding},
    )


def grounding_of(candidates: list[dict]) -> dict:
    """``groundingMetadata``: the searches the model ran (each billed on Gemini 3) and the
    web sources it cites, as ``{"queries": [...], "sources": [{"uri", "title"}]}``; empty
    when the answer was not grounded."""
    queries: list[str] = []
    sources: list[dict] = []
    for candidate in candidates:
        meta = candidate.get("groundingMetadata")
        if not isinstance(meta, dict):
            continue
        queries += [str(q) for q in meta.get("webSearchQueries") or [] if str(q).strip()]
        for chunk in meta.get("groundingChunks") or []:
            web = chunk.get("web") if isinstance(chunk, dict) else None
            if isinstance(web, dict) and str(web.get("uri", "")).startswith(
                ("https://", "http://")
            ):
                source = {
                    "uri": str(web["uri"])[:2000],
                    "title": clean_text(str(web.get("title") or ""))[:200],
                }
                if source not in sources:
                    sources.append(source)
    return {"queries": queries, "sources": sources} if queries or sources else {}


def usage_from_metadata(meta: Any) -> Usage:
    """``usageMetadata`` → :class:`Usage`; absent counts are 0.

    ``candidatesTokenCount`` covers text and image output but not thinking
    (``thoughtsTokenCount``), which Google reports and bills separately.
    """
    if not isinstance(meta, dict):
        return Usage()

    def images_in(details: Any) -> int:
        return sum(
            as_int(d.get("tokenCount"))
            for d in details or []
            if isinstance(d, dict) and d.get("modality") == "IMAGE"
        )

    image_tokens = images_in(meta.get("candidatesTokensDetails"))
    return Usage(
        input_tokens=as_int(meta.get("promptTokenCount")),
        input_image_tokens=images_in(meta.get("promptTokensDetails")),
        output_text_tokens=max(as_int(meta.get("candidatesTokenCount")) - image_tokens, 0),
        output_image_tokens=image_tokens,
        thinking_tokens=as_int(meta.get("thoughtsTokenCount")),
        total_tokens=as_int(meta.get("totalTokenCount")),
    )


def _raise_if_blocked(feedback: dict, candidates: list[dict], billed: dict) -> None:
    if block := str(feedback.get("blockReason") or ""):
        reason = PROMPT_BLOCK_REASONS.get(block, block.replace("_", " ").lower())
        raise ProviderError(
            ErrorKind.BLOCKED,
            _("Your prompt was blocked by the provider's safety filter (%(reason)s).")
            % {"reason": reason},
            detail=f"promptFeedback.blockReason={block}",
            **billed,
        )
    for candidate in candidates:
        if (reason := candidate.get("finishReason")) in BLOCK_MESSAGES:
            raise ProviderError(
                ErrorKind.BLOCKED,
                str(BLOCK_MESSAGES[reason]),
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
        message = f'The model answered with text only: "{excerpt(text, TEXT_EXCERPT_CHARS)}"'
    elif candidates:
        message = "The model returned neither an image nor text."
    else:
        message = "The provider returned no result for this prompt."
    return ProviderError(ErrorKind.NO_IMAGE, message, detail=detail, **billed)


def _finish_detail(candidate: dict) -> str:
    detail = f"finishReason={candidate.get('finishReason') or 'none'}"
    if candidate.get("finishMessage"):
        detail += f": {excerpt(str(candidate['finishMessage']), UPSTREAM_MESSAGE_CHARS)}"
    return detail


def _decode_image(inline: dict, usage: Usage, http_status: int) -> GeneratedImage:
    mime = str(inline["mimeType"]).split(";")[0].strip().lower()
    mime = "image/jpeg" if mime == "image/jpg" else mime
    try:
        data = base64.b64decode(inline.get("data") or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise corrupt(f"invalid base64 image data: {exc}", http_status, usage) from None
    problem = image_problem(data, mime)
    if problem:
        raise corrupt(problem, http_status, usage)
    return GeneratedImage(data=data, mime_type=mime)


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None
) -> ProviderError:
    """Classify a non-2xx answer from its ``google.rpc.Status`` envelope (or status alone)."""
    error = _error_envelope(body)
    rpc_status = str(error.get("status") or "")
    # Only Google's own message is fit for users; a proxy's HTML page goes to the detail.
    upstream = clean_text(str(error.get("message") or ""))
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    reasons = [str(d.get("reason") or "") for d in details if d.get("@type") == ERROR_INFO]
    quota_ids = [
        f"{v.get('quotaId', '')} {v.get('quotaMetric', '')}".strip()
        for d in details
        if d.get("@type") == QUOTA_FAILURE
        for v in d.get("violations") or []
        if isinstance(v, dict)
    ]
    said = upstream or excerpt(text_of(body), 200) or "(empty body)"
    detail = _error_detail(f"HTTP {status} {rpc_status}".strip(), said, reasons, quota_ids)

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if relay_saturated(upstream, text_of(body)):  # a relay's pool is full (One API / New API)
        return error_of(
            ErrorKind.TRANSIENT, str(SATURATED_MESSAGE), retry_after=retry_after_header(headers)
        )
    if status == 429 or rpc_status == "RESOURCE_EXHAUSTED":
        if any("perday" in q.lower().replace("_", "") for q in quota_ids):
            return error_of(
                ErrorKind.KEY_EXHAUSTED, _("The provider key has used up its daily quota.")
            )
        delay = _retry_delay(details)
        if delay is None:
            delay = retry_after_header(headers)
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=delay,
        )
    if (
        any(r.startswith("API_KEY_") for r in reasons)
        or "api key not valid" in upstream.lower()
        or status in (401, 403)
    ):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if rpc_status == "FAILED_PRECONDITION":
        # "User location is not supported", "free tier not available in your country,
        # enable billing": the Google project or the server's region, not the key itself,
        # so the key stays enabled. Retrying here cannot help until an admin fixes the
        # account, but another route (a relay) may well serve: refused, fail over.
        message = "The provider is not available to this account or from this location"
        return error_of(ErrorKind.REFUSED, f"{message}: {upstream}" if upstream else f"{message}.")
    if status == 404 and rpc_status == "NOT_FOUND" and "models/" in upstream:
        # "models/x is not found for API version v1beta, or is not supported for
        # generateContent": shut down, or unknown to this key. Another route may still
        # serve; this one is retired (ai.google.dev/gemini-api/docs/troubleshooting).
        message = "The provider no longer serves this model"
        return error_of(ErrorKind.MODEL_GONE, f"{message}: {upstream}")
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


def _error_detail(head: str, said: str, reasons: list[str], quota_ids: list[str]) -> str:
    detail = f"{head}: {said}"
    if reasons:
        detail += f" [reason: {', '.join(reasons)}]"
    if quota_ids:
        detail += f" [quota: {'; '.join(quota_ids)}]"
    return detail


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
