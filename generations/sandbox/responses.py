"""Response bodies in the exact shape Google's Gemini API sends them.

Pure functions returning dicts, camelCase as on the wire (see the recorded
fixtures in tests/fixtures/gemini). Errors use Google's ``google.rpc.Status``
envelope. Randomness (ids, signatures, thought counts, grounding sources) comes from
the caller's ``random.Random`` so a seeded sandbox is repeatable.

* Thinking: ``usageMetadata.thoughtsTokenCount`` follows the request's thinking level
  (drawn from the model's range in ``specs``; Google publishes no figures) and every
  part of a thinking model carries a ``thoughtSignature``.
* Grounding: a request with the Google Search tool gets the candidate's
  ``groundingMetadata`` in the shape of https://ai.google.dev/gemini-api/docs/google-search
  and of the GroundingMetadata reference
  (https://docs.cloud.google.com/vertex-ai/docs/reference/rest/v1beta1/GroundingMetadata):
  ``webSearchQueries``, ``searchEntryPoint.renderedContent`` (an HTML/CSS snippet),
  ``groundingChunks`` of ``{"web": {"uri", "title"}}`` where the uri is a
  vertexaisearch redirect and the title the source's domain, and ``groundingSupports``
  tying the answer's text (UTF-8 byte offsets; a zero ``startIndex`` is left out, as
  protobuf JSON does) to the chunks. The sources are made up.
* models.list and models.get answer Model resources (https://ai.google.dev/api/models);
  an id that is unknown, shut down or hidden from the key gets Google's 404 NOT_FOUND
  ("models/<id> is not found for API version v1beta, or is not supported for
  generateContent. Call ListModels ...").
"""

from __future__ import annotations

import base64
import html
import random
import re
from urllib.parse import quote_plus

from generations.sandbox.specs import UpstreamModel, upstream_model

REFERENCE_IMAGE_TOKENS = 258  # per image sent in the request
RATE_LIMITS_URL = "https://ai.google.dev/gemini-api/docs/rate-limits"
QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
PER_MINUTE_QUOTA = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
PER_DAY_QUOTA = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
_SAFETY_MESSAGE = (
    "Unable to show the generated image. The image was filtered out because it violated "
    "Google's Generative AI Prohibited Use policy. You will not be charged for blocked images. "
    "Try rephrasing the prompt."
)


def text_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def response_id(rng: random.Random) -> str:
    # Real ids are 17 random bytes in url-safe base64: 23 characters.
    return base64.urlsafe_b64encode(rng.randbytes(17)).decode().rstrip("=")


def thought_signature(rng: random.Random) -> str:
    # Real signatures are opaque base64 of up to a megabyte; a few hundred bytes will do.
    return base64.b64encode(rng.randbytes(rng.randint(96, 384))).decode()


def caption(prompt: str) -> str:
    subject = " ".join(prompt.split())
    if len(subject) > 80:
        subject = subject[:80].rsplit(" ", 1)[0] + "…"
    return f"Here is an image of {subject}." if subject else "Here is your image."


# --- 200 bodies -------------------------------------------------------------


def image_body(
    model: str,
    prompt: str,
    image: bytes,
    *,
    image_size: str = "1K",
    references: int = 0,
    with_text: bool = True,
    thinking_level: str | None = None,
    grounded: bool = False,
    rng: random.Random,
) -> dict:
    """A successful generation: a short caption (unless IMAGE-only) and the image.

    ``thinking_level`` None means the model's default; ``grounded`` adds the
    groundingMetadata a Google Search tool brings."""
    spec = upstream_model(model)
    parts = []
    text = caption(prompt) if with_text else ""
    if text:
        parts.append({"text": text})
    parts.append({"inlineData": {"mimeType": spec.mime_type, "data": _b64(image)}})
    image_tokens = spec.image_tokens.get(image_size, spec.image_tokens["1K"])
    output = [{"modality": "IMAGE", "tokenCount": image_tokens}]
    usage = _usage(
        prompt,
        references,
        output_tokens=image_tokens + (text_tokens(text) if text else 0),
        output_details=output,
        thoughts=_thoughts(spec, thinking_level, rng),
    )
    candidate = _candidate(_signed(parts, spec.thinks, rng), "STOP")
    if grounded:
        candidate["groundingMetadata"] = grounding_metadata(prompt, text, rng)
    return _envelope(model, [candidate], usage, rng)


def text_only_body(
    model: str,
    prompt: str,
    *,
    references: int = 0,
    thinking_level: str | None = None,
    grounded: bool = False,
    rng: random.Random,
) -> dict:
    """STOP with a text part and no image, as the models sometimes answer (and text
    models always do)."""
    spec = upstream_model(model)
    subject = caption(prompt).removeprefix("Here is ").removesuffix(".")
    if spec.makes_images:
        text = f"I can describe it instead: {subject}, rendered in warm light with a soft, "
        text += "painterly finish."
    else:
        text = f"Here is a short answer about {subject.removeprefix('an image of ')}."
    parts = _signed([{"text": text}], spec.thinks, rng)
    usage = _usage(
        prompt,
        references,
        output_tokens=text_tokens(text),
        thoughts=_thoughts(spec, thinking_level, rng),
    )
    candidate = _candidate(parts, "STOP")
    if grounded:
        candidate["groundingMetadata"] = grounding_metadata(prompt, text, rng)
    return _envelope(model, [candidate], usage, rng)


def no_content_body(
    model: str,
    prompt: str,
    finish_reason: str,
    *,
    references: int = 0,
    thinking_level: str | None = None,
    rng: random.Random,
) -> dict:
    """A candidate that stopped without any part (IMAGE_SAFETY, NO_IMAGE, ...)."""
    spec = upstream_model(model)
    candidate = {"content": {"role": "model"}, "finishReason": finish_reason, "index": 0}
    if finish_reason == "IMAGE_SAFETY":
        candidate["finishMessage"] = _SAFETY_MESSAGE
    usage = _usage(prompt, references, thoughts=_thoughts(spec, thinking_level, rng))
    return _envelope(model, [candidate], usage, rng)


def prompt_blocked_body(
    model: str,
    prompt: str,
    *,
    references: int = 0,
    block_reason: str = "PROHIBITED_CONTENT",
    rng: random.Random,
) -> dict:
    """The prompt itself was refused: promptFeedback and no candidates at all."""
    body = {
        "promptFeedback": {"blockReason": block_reason},
        "usageMetadata": _usage(prompt, references),
    }
    body.update(modelVersion=model, responseId=response_id(rng))
    return body


def _candidate(parts: list[dict], finish_reason: str) -> dict:
    return {"content": {"parts": parts, "role": "model"}, "finishReason": finish_reason, "index": 0}


def _envelope(model: str, candidates: list[dict], usage: dict, rng: random.Random) -> dict:
    return {
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id(rng),
    }


def _signed(parts: list[dict], thinks: bool, rng: random.Random) -> list[dict]:
    if thinks:
        for part in parts:
            part["thoughtSignature"] = thought_signature(rng)
    return parts


def _thoughts(spec: UpstreamModel, level: str | None, rng: random.Random) -> int:
    """thoughtsTokenCount at ``level`` (None: the model's default); 0 if it does not think."""
    level = level or spec.default_thinking
    if level is None:
        return 0
    low, high = spec.thought_tokens[level]
    return rng.randint(low, high)


# --- grounding with Google Search ----------------------------------------------

_TRIGGERS = re.compile(r"\[sandbox:[^\]]*\]", re.IGNORECASE)
# Made-up sources; real chunks name the source's domain as their title.
_SOURCES = (
    "wikipedia.org",
    "britannica.com",
    "nationalgeographic.com",
    "smithsonianmag.com",
    "bbc.co.uk",
    "nasa.gov",
)
_REDIRECT = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
_ENTRY_POINT_STYLE = (
    "<style>\n.container { align-items: center; border-radius: 8px; display: flex; "
    "font-family: Google Sans, Roboto, sans-serif; font-size: 14px; line-height: 20px; "
    "padding: 8px 12px; }\n.chip { display: inline-block; border: solid 1px; "
    "border-radius: 16px; min-width: 14px; padding: 5px 16px; text-align: center; "
    "user-select: none; margin: 0 8px; -webkit-tap-highlight-color: transparent; }\n"
    ".carousel { overflow: auto; scrollbar-width: none; white-space: nowrap; "
    "margin-right: -12px; }\n.headline { display: flex; margin-right: 4px; }\n"
    "@media (prefers-color-scheme: light) { .container { background-color: #fafafa; "
    "box-shadow: 0 0 0 1px #0000000f inset; } .chip { background-color: #ffffff; "
    "border-color: #d2d2d2; color: #5e5e5e; text-decoration: none; } }\n"
    "@media (prefers-color-scheme: dark) { .container { background-color: #1f1f1f; "
    "box-shadow: 0 0 0 1px #ffffff26 inset; } .chip { background-color: #2c2c2c; "
    "border-color: #3c4043; color: #fff; text-decoration: none; } }\n</style>\n"
)


def grounding_metadata(prompt: str, text: str, rng: random.Random) -> dict:
    """groundingMetadata for an answer grounded in (made-up) Google Search results."""
    subject = " ".join(_TRIGGERS.sub(" ", prompt).split())[:80].strip() or "image ideas"
    queries = [subject, f"{subject} reference photos"]
    sources = rng.sample(_SOURCES, 2)
    chunks = [
        {"web": {"uri": _REDIRECT + _redirect_token(rng), "title": source}} for source in sources
    ]
    metadata: dict = {
        "webSearchQueries": queries,
        "searchEntryPoint": {"renderedContent": _entry_point(queries)},
        "groundingChunks": chunks,
    }
    if text:
        # Offsets count UTF-8 bytes; protobuf JSON leaves a zero startIndex out.
        segment = {"endIndex": len(text.encode()), "text": text}
        metadata["groundingSupports"] = [
            {"segment": segment, "groundingChunkIndices": list(range(len(chunks)))}
        ]
    return metadata


def _redirect_token(rng: random.Random) -> str:
    return base64.urlsafe_b64encode(rng.randbytes(96)).decode().rstrip("=")


def _entry_point(queries: list[str]) -> str:
    chips = "\n".join(
        f'    <a class="chip" href="https://www.google.com/search?q={quote_plus(q)}'
        f'&amp;client=app-vertex-grounding&amp;safesearch=active">{html.escape(q)}</a>'
        for q in queries
    )
    return (
        f'{_ENTRY_POINT_STYLE}<div class="container">\n  <div class="headline">Google</div>\n'
        f'  <div class="carousel">\n{chips}\n  </div>\n</div>\n'
    )


# --- models.list and models.get -----------------------------------------------


def model_resource(spec: UpstreamModel) -> dict:
    """A Model as models.get and models.list give it."""
    body: dict = {
        "name": f"models/{spec.name}",
        "version": spec.version,
        "displayName": spec.display_name,
        "description": spec.description,
        "inputTokenLimit": spec.input_token_limit,
        "outputTokenLimit": spec.output_token_limit,
        "supportedGenerationMethods": list(spec.methods),
    }
    if spec.generates_content:  # sampling defaults, as Gemini models report them
        body.update(temperature=1, topP=0.95, topK=64, maxTemperature=2)
        if spec.thinks:
            body["thinking"] = True
    return body


def models_page(specs: list[UpstreamModel], next_page_token: str | None) -> dict:
    """A models.list answer; nextPageToken is left out on the last page."""
    body: dict = {"models": [model_resource(s) for s in specs]}
    if next_page_token:
        body["nextPageToken"] = next_page_token
    return body


def _usage(
    prompt: str,
    references: int,
    *,
    output_tokens: int = 0,
    output_details: list[dict] | None = None,
    thoughts: int = 0,
) -> dict:
    """usageMetadata; totalTokenCount = prompt + candidates + thoughts, as Google counts."""
    prompt_text = text_tokens(prompt)
    details = [{"modality": "TEXT", "tokenCount": prompt_text}]
    if references:
        details.insert(0, {"modality": "IMAGE", "tokenCount": REFERENCE_IMAGE_TOKENS * references})
    prompt_total = sum(d["tokenCount"] for d in details)
    usage: dict = {"promptTokenCount": prompt_total}
    if output_tokens:
        usage["candidatesTokenCount"] = output_tokens
    usage["totalTokenCount"] = prompt_total + output_tokens + thoughts
    usage["promptTokensDetails"] = details
    if output_details:
        usage["candidatesTokensDetails"] = output_details
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- errors (google.rpc.Status) --------------------------------------------


def error_body(code: int, status: str, message: str, details: list[dict] | None = None) -> dict:
    error: dict = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def rate_limited_body(
    model: str, retry_delay: float, *, per_day: bool = False, limit: int = 10
) -> dict:
    """429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo, as the free tier sends."""
    delay = duration(retry_delay)
    message = (
        "You exceeded your current quota, please check your plan and billing details. "
        f"For more information on this error, head to: {RATE_LIMITS_URL}. "
        "To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n"
        f"* Quota exceeded for metric: {QUOTA_METRIC}, limit: {limit}, model: {model}\n"
        f"Please retry in {delay}."
    )
    violation = {
        "quotaMetric": QUOTA_METRIC,
        "quotaId": PER_DAY_QUOTA if per_day else PER_MINUTE_QUOTA,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(limit),
    }
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}
            ],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return error_body(429, "RESOURCE_EXHAUSTED", message, details)


def duration(seconds: float) -> str:
    """A protobuf Duration in JSON: "26s", "1.500s" (0 or 3 fractional digits here)."""
    millis = max(0, round(seconds * 1000))
    if millis % 1000 == 0:
        return f"{millis // 1000}s"
    return f"{millis // 1000}.{millis % 1000:03d}s"


def region_refused_body() -> dict:
    """400 FAILED_PRECONDITION, as Google answers a project in a region it does not serve."""
    return error_body(400, "FAILED_PRECONDITION", "User location is not supported for the API use.")


def unavailable_body() -> dict:
    return error_body(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def internal_body() -> dict:
    return error_body(
        500,
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    )


def deadline_body() -> dict:
    return error_body(504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")


def invalid_argument_body(message: str) -> dict:
    return error_body(400, "INVALID_ARGUMENT", message)


def api_key_invalid_body() -> dict:
    message = "API key not valid. Please pass a valid API key."
    return error_body(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def permission_denied_body() -> dict:
    return error_body(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def not_found_body(path: str) -> dict:
    return error_body(404, "NOT_FOUND", f"The requested URL {path} was not found on this server.")


def model_not_found_body(model: str, method: str = "generateContent") -> dict:
    """404 for an id the API does not serve (unknown, shut down, or not for this key).

    The generateContent wording is Google's; for models.get the sandbox names the
    method "get" in the same sentence (Google's exact wording there was not checked)."""
    message = (
        f"models/{model} is not found for API version v1beta, or is not supported for "
        f"{method}. Call ListModels to see the list of available models and their "
        "supported methods."
    )
    return error_body(404, "NOT_FOUND", message)
