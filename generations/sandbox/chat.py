"""An OpenAI-compatible relay (One API / New API style) for the sandbox:
``POST /v1/chat/completions`` with the image in the assistant's message.

Wire facts relied on, and where they come from (looked up in late 2026):

* Relays in the One API family (songquanpeng/one-api, QuantumNous/new-api, formerly
  Calcium-Ion/new-api) answer in OpenAI's error envelope ``{"error": {"message", "type",
  "param", "code"}}`` and append `` (request id: <id>)`` to the message; the id is a
  timestamp (``20060102150405``), nine digits of nanoseconds and eight random letters,
  e.g. ``20250423020142736330894dLoIRrS6`` (QuantumNous/new-api#991).
* The pool-saturated answer: HTTP 429, ``当前分组上游负载已饱和，请稍后再试`` — One API
  rewrites any upstream 429 to it (``controller/relay.go``: ``if openaiErr.StatusCode ==
  http.StatusTooManyRequests { openaiErr.Error.Message = "当前分组上游负载已饱和，请稍后再试" }``);
  seen live as ``{"message": "当前分组上游负载已饱和，请稍后再试 (request id: …)", "type":
  "upstream_error", "param": "429", "code": "bad_response_status_code"}``
  (WEIFENG2333/VideoCaptioner#1120; QuantumNous/new-api#991, songquanpeng/one-api#1061,
  labring/FastGPT#1882 for the 429). Upstream errors keep that shape: ``type``
  ``upstream_error``, ``code`` ``bad_response_status_code``, ``param`` the status.
* Tokens: a missing one is 401 ``未提供令牌``, an unknown one 401 ``无效的令牌``, with ``type``
  ``new_api_error`` (New API's ``middleware/auth.go``; One API says ``one_api_error``).
  No money left: 403, ``code`` ``insufficient_user_quota`` (One API: "user quota is not
  enough"; New API: "用户额度不足, 剩余额度: …", as quoted in public code). A model with no
  channel: 503 ``当前分组 default 下对于模型 <model> 无可用渠道`` (One API's distributor).
* Image models through chat: by default the message content is markdown with the image
  as a data URI (``![image](data:image/png;base64,…)``), or a markdown link to a hosted
  file; OpenRouter instead puts ``message.images: [{"type": "image_url", "image_url":
  {"url": "data:…"}}]`` beside the text, and takes ``image_config: {"aspect_ratio",
  "image_size"}`` (https://openrouter.ai/docs/features/multimodal/image-generation).
  ``SandboxConfig.chat_image_style`` picks "data", "link" or "images". Model ids are
  the Gemini ones the sandbox serves, optionally suffixed ``-2k``/``-4k`` for the size,
  as Chinese relays sell them (shared/CHANNELS.md, Relays).
* They pass Google's answers without an image through as a plain message: the sandbox
  answers a blocked prompt or image with empty content and ``finish_reason``
  ``content_filter``, and NO_IMAGE or a text-only answer with ``stop`` (the mapping is the
  sandbox's, after New API's Gemini adaptor; not checked against a live relay).

Not confirmed, the sandbox's own choices: the 400 wording for an unreadable request,
the refusal of ``stream: true``, and the per-minute 429 a relay's own rate limit gives
(the sandbox answers rate_limit, saturated and capacity alike with the saturated 429).

Fault classes take the relay's forms: rate_limit/saturated/capacity → 429 saturated;
daily_quota/out_of_credit → 403 ``insufficient_user_quota``; unavailable → 503, internal
→ 500, deadline → 504, region → 400 (each Google's message as ``upstream_error``);
timeout → no answer; prompt_block/image_safety → ``content_filter`` without an image;
no_image/text_only → ``stop`` without an image; malformed → unreadable JSON; truncated →
the image is cut short; slow_queue → ``slow_queue_seconds`` more latency.
"""

from __future__ import annotations

import json
import random
import string
import time
import uuid
from datetime import datetime

from generations.sandbox import media, responses
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.specs import MODELS, upstream_model
from generations.sandbox.state import Reply, Request

JSON_UTF8 = "application/json; charset=utf-8"
SATURATED = "当前分组上游负载已饱和，请稍后再试"
NO_CHANNEL = "当前分组 default 下对于模型 {model} 无可用渠道"
QUOTA = "用户额度不足, 剩余额度: $0.000000"
SIZE_SUFFIXES = {"-2k": "2K", "-4k": "4K"}
REFERENCE_TOKENS = 258  # per reference image, as Gemini counts them (responses.py)
UPSTREAM = {
    "unavailable": (503, "The model is overloaded. Please try again later."),
    "internal": (500, responses.internal_body()["error"]["message"]),
    "deadline": (504, "Deadline expired before operation could complete."),
    "region": (400, "User location is not supported for the API use."),
}


def request_id() -> str:
    now = datetime.now()
    letters = "".join(random.choices(string.ascii_letters, k=8))
    return f"{now:%Y%m%d%H%M%S}{now.microsecond * 1000:09d}{letters}"


def error_reply(
    status: int, message: str, kind: str, outcome: str, *, code=None, param=""
) -> Reply:
    body = {
        "error": {
            "message": f"{message} (request id: {request_id()})",
            "type": kind,
            "param": param,
            "code": code,
        }
    }
    return Reply.of(status, body, outcome, content_type=JSON_UTF8, ascii_only=False)


class _Invalid(Exception):
    pass


class ChatRelay:
    """POST /v1/chat/completions, answered synchronously."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping

    def handle(self, req: Request) -> Reply:
        self.state.count_request()
        scheme, _, key = (req.headers.get("Authorization") or "").partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        if not key:
            return error_reply(401, "未提供令牌", "new_api_error", "no_key")
        if key in self.config.invalid_keys:
            return error_reply(401, "无效的令牌", "new_api_error", "api_key_invalid")
        try:
            body = json.loads(req.body or b"")
            if not isinstance(body, dict):
                raise ValueError
        except (ValueError, UnicodeDecodeError):
            return error_reply(400, "invalid request body", "new_api_error", "invalid")
        model = body.get("model")
        parsed = _model(model) if isinstance(model, str) else None
        if parsed is None:
            message = NO_CHANNEL.format(model=model)
            return error_reply(
                503, message, "new_api_error", "model_not_found", code="model_not_found"
            )
        base, size = parsed
        try:
            prompt, references = self._messages(body.get("messages"), req.origin)
            ratio, size = _image_config(body.get("image_config"), base, size)
            if body.get("stream"):
                raise _Invalid("The sandbox does not stream chat completions: send stream=false.")
            fault = self.state.fault_for(prompt, key)
        except (_Invalid, BadRequest) as exc:
            return error_reply(
                400, str(exc), "invalid_request_error", "invalid", code="invalid_request"
            )
        refusal = self.state.check_quota(key)
        if fault is None and refusal is not None:
            fault = "daily_quota" if refusal.per_day else "rate_limit"
        refused = _refusal(fault)
        if refused is not None:
            return refused
        self.engine.counters.submitted(prompt)
        delay = self.state.latency() + (
            self.config.slow_queue_seconds if fault == "slow_queue" else 0
        )
        self.stopping.wait(delay)
        reply = self._completion(model, base, prompt, references, ratio, size, fault, req.origin)
        if fault == "malformed":
            return Reply(200, media.cut_json(reply.body), fault, content_type=JSON_UTF8)
        return reply

    def _messages(self, messages, origin: str) -> tuple[str, int]:
        if not isinstance(messages, list) or not messages:
            raise _Invalid("messages is required")
        texts: list[str] = []
        references = 0
        for message in messages:
            if not isinstance(message, dict) or message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            if not isinstance(content, list):
                raise _Invalid("content must be a string or a list of parts")
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text" and isinstance(part.get("text"), str):
                    texts.append(part["text"])
                elif kind == "image_url":
                    url = (part.get("image_url") or {}).get("url")
                    try:
                        media.load_reference(url, self.engine.files, origin)
                    except media.BadImage as exc:
                        raise _Invalid(f"invalid image_url: {exc}") from None
                    references += 1
                else:
                    raise _Invalid(f"unsupported content part type: {kind!r}")
        prompt = "\n".join(texts)
        if not prompt.strip():
            raise _Invalid("the user message has no text")
        return prompt, references

    def _completion(self, model, base, prompt, references, ratio, size, fault, origin) -> Reply:
        spec = upstream_model(base)
        prompt_tokens = responses.text_tokens(prompt) + REFERENCE_TOKENS * references
        message: dict = {"role": "assistant", "content": ""}
        finish = "stop"
        completion_tokens = 0
        if fault in ("prompt_block", "image_safety"):
            finish = "content_filter"
        elif fault in ("no_image", "text_only"):
            if fault == "text_only":
                message["content"] = responses.caption(prompt).replace("Here is", "I can describe")
                completion_tokens = responses.text_tokens(message["content"])
        else:
            width, height = dimensions(base, ratio, size)
            image = render_image(prompt, width, height, spec.image_format)
            if fault == "truncated":
                image = media.cut(image)
            url = self._image_url(image, spec, origin)
            text = responses.caption(prompt)
            completion_tokens = spec.image_tokens[size] + responses.text_tokens(text)
            if self.config.chat_image_style == "images":
                message["content"] = text
                message["images"] = [{"type": "image_url", "image_url": {"url": url}}]
            else:
                message["content"] = f"{text}\n\n![image]({url})"
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return Reply.of(200, body, fault or "ok", content_type=JSON_UTF8, ascii_only=False)

    def _image_url(self, image: bytes, spec, origin: str) -> str:
        mime = spec.mime_type or "image/png"
        if self.config.chat_image_style == "link":
            extension = "jpg" if mime == "image/jpeg" else "png"
            name = self.engine.store(image, extension, mime, time.monotonic())
            return f"{origin}/files/{name}"
        return media.data_uri(image, mime)


def _model(name: str) -> tuple[str, str] | None:
    """(sandbox model, image size) for a relay model id, or None when no channel serves it."""
    base, size = name, "1K"
    for suffix, suffix_size in SIZE_SUFFIXES.items():
        if name.lower().endswith(suffix):
            base, size = name[: -len(suffix)], suffix_size
    spec = MODELS.get(base)
    if spec is None or not spec.makes_images or size not in spec.image_tokens:
        return None
    return base, size


def _image_config(config, base: str, size: str) -> tuple[str, str]:
    """OpenRouter's image_config: aspect_ratio and image_size (the suffix wins if both)."""
    if config is None:
        return "1:1", size
    if not isinstance(config, dict):
        raise _Invalid("image_config must be an object")
    spec = upstream_model(base)
    ratio = config.get("aspect_ratio", "1:1")
    if ratio not in spec.aspect_ratios:
        raise _Invalid(
            f"unsupported aspect_ratio {ratio!r}; use one of {', '.join(spec.aspect_ratios)}"
        )
    asked = config.get("image_size")
    if asked is not None and size == "1K":
        if asked not in spec.image_tokens:
            raise _Invalid(
                f"unsupported image_size {asked!r}; use one of {', '.join(spec.image_tokens)}"
            )
        size = asked
    return ratio, size


def _refusal(fault: str | None) -> Reply | None:
    match fault:
        case "rate_limit" | "saturated" | "capacity":
            code = "bad_response_status_code"
            return error_reply(429, SATURATED, "upstream_error", fault, code=code, param="429")
        case "daily_quota" | "out_of_credit":
            code = "insufficient_user_quota"
            return error_reply(403, QUOTA, "new_api_error", fault, code=code)
        case "unavailable" | "internal" | "deadline" | "region":
            status, message = UPSTREAM[fault]
            code = "bad_response_status_code"
            return error_reply(
                status, message, "upstream_error", fault, code=code, param=str(status)
            )
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None
