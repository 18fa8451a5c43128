"""The direct (synchronous) protocols: Gemini's generateContent and models API, and
OpenAI's Images API. ``server`` routes requests here; the wire shapes are in
``responses`` and ``openai_images`` (sources there).

The fault classes added with the channel protocols (state.CHANNEL_FAULTS) take these
APIs' nearest forms, the sandbox's choice: out_of_credit is Gemini's per-day 429
RESOURCE_EXHAUSTED ("You exceeded your current quota, please check your plan and billing
details") and OpenAI's ``insufficient_quota`` 429 (what both send an account without
money); saturated and capacity are their 503 "overloaded"; slow_queue adds
``SandboxConfig.slow_queue_seconds`` of latency before a normal answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import threading
from urllib.parse import parse_qs

from generations.sandbox import openai_images as openai
from generations.sandbox import responses
from generations.sandbox.parse import BadRequest, GenerateRequest, parse_request
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.specs import MODELS, find_model, upstream_model
from generations.sandbox.state import (
    Refusal,
    Reply,
    SandboxConfig,
    SandboxState,
    gemini_refusal,
    openai_refusal,
)

MODELS_PAGE_SIZE = 5  # models.list's default page; Google's is 50 (see server's docstring)
MAX_MODELS_PAGE_SIZE = 1000  # Google's cap
INJECTED_RETRY_DELAY = 1.5  # seconds, in the RetryInfo of an injected per-minute 429
FREE_TIER_RPM = 10  # the limit an injected 429 quotes when no rpm is configured
GENERATED = (None, "text_only", "truncated", "slow_queue")  # faults that still make an answer


class DirectAPIs:
    """Gemini and OpenAI Images: each request answered in the same connection."""

    def __init__(
        self, config: SandboxConfig, state: SandboxState, stopping: threading.Event
    ) -> None:
        self.config = config
        self.state = state
        self.stopping = stopping  # wakes requests that are sleeping

    def _latency(self, fault: str | None) -> float:
        extra = self.config.slow_queue_seconds if fault == "slow_queue" else 0.0
        return self.state.latency() + extra

    def answer(self, model: str, key: str, raw: bytes) -> Reply:
        """The whole decision for one generateContent call."""
        self.state.count_request()
        refused = self._check_key(key)
        if refused is not None:
            return refused
        spec = find_model(model)
        if spec is None or not spec.generates_content or not self.config.can_see(key, model):
            return Reply.of(404, responses.model_not_found_body(model), "model_not_found")
        refused = self.state.admit(key, model)
        if refused is not None:
            return refused
        try:
            request = parse_request(model, raw)
            fault = self.state.fault_for(request.prompt, key)
        except BadRequest as exc:
            return Reply.of(400, responses.invalid_argument_body(str(exc)), "invalid_argument")
        self.stopping.wait(self._latency(fault))
        return self._reply(request, fault, self.state.request_rng())

    def _reply(self, req: GenerateRequest, fault: str | None, rng: random.Random) -> Reply:
        if fault in GENERATED:
            return self._generated(req, fault, rng)
        return self._fault(req, fault, rng)

    def _fault(self, req: GenerateRequest, fault: str, rng: random.Random) -> Reply:
        model, prompt, refs, level = req.model, req.prompt, req.references, req.thinking_level
        match fault:
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
            case "rate_limit":
                limit = self.config.rpm or FREE_TIER_RPM
                body = responses.rate_limited_body(model, INJECTED_RETRY_DELAY, limit=limit)
                return Reply.of(429, body, fault)
            case "daily_quota":
                return gemini_refusal(model, self.state.injected_daily())
            case "out_of_credit":
                return gemini_refusal(model, self.state.injected_daily())
            case "unavailable" | "saturated" | "capacity":
                return Reply.of(503, responses.unavailable_body(), fault)
            case "internal":
                return Reply.of(500, responses.internal_body(), fault)
            case "region":
                return Reply.of(400, responses.region_refused_body(), fault)
            case "deadline":
                return Reply.of(504, responses.deadline_body(), fault)
            case "prompt_block":
                body = responses.prompt_blocked_body(model, prompt, references=refs, rng=rng)
                return Reply.of(200, body, fault)
            case "image_safety" | "no_image":
                reason = fault.upper()
                body = responses.no_content_body(
                    model, prompt, reason, references=refs, thinking_level=level, rng=rng
                )
                return Reply.of(200, body, fault)
            case "malformed":
                body = responses.text_only_body(
                    model, prompt, references=refs, thinking_level=level, rng=rng
                )
                whole = json.dumps(body, indent=2).encode()
                return Reply(200, whole[: len(whole) // 2], fault)
        raise AssertionError(f"unhandled fault {fault}")

    def _generated(self, req: GenerateRequest, fault: str | None, rng: random.Random) -> Reply:
        """What the model made: an image (perhaps truncated on the way) or only text."""
        if fault == "text_only" or "IMAGE" not in req.modalities:
            body = responses.text_only_body(
                req.model,
                req.prompt,
                references=req.references,
                thinking_level=req.thinking_level,
                grounded=req.grounded,
                rng=rng,
            )
            return Reply.of(200, body, fault or "ok")
        width, height = dimensions(req.model, req.aspect_ratio, req.image_size)
        image = render_image(req.prompt, width, height, upstream_model(req.model).image_format)
        body = responses.image_body(
            req.model,
            req.prompt,
            image,
            image_size=req.image_size,
            references=req.references,
            with_text="TEXT" in req.modalities,
            thinking_level=req.thinking_level,
            grounded=req.grounded,
            rng=rng,
        )
        if fault == "truncated":
            inline = body["candidates"][0]["content"]["parts"][-1]["inlineData"]
            # Cut on a 4-character boundary: the base64 still decodes, the image does not.
            inline["data"] = inline["data"][: len(inline["data"]) * 2 // 5 // 4 * 4]
        return Reply.of(200, body, fault or "ok")

    def _check_key(self, key: str) -> Reply | None:
        if not key:
            return Reply.of(403, responses.permission_denied_body(), "no_key")
        if key in self.config.invalid_keys:
            return Reply.of(400, responses.api_key_invalid_body(), "api_key_invalid")
        return None

    def answer_models_list(self, key: str, query: str) -> Reply:
        """models.list: the models ``key`` can see, a page at a time."""
        refused = self._check_key(key)
        if refused is not None:
            return refused
        params = parse_qs(query)
        try:
            size = _page_size(params.get("pageSize", params.get("page_size", [""]))[0])
            start = _page_offset(params.get("pageToken", params.get("page_token", [""]))[0])
        except BadRequest as exc:
            return Reply.of(400, responses.invalid_argument_body(str(exc)), "invalid_argument")
        visible = [m for name, m in MODELS.items() if self.config.can_see(key, name)]
        page = visible[start : start + size]
        more = start + size < len(visible)
        token = _page_token(start + size) if more else None
        return Reply.of(200, responses.models_page(page, token))

    def answer_model_get(self, model: str, key: str) -> Reply:
        """models.get: one Model, or 404 when ``key`` cannot see it."""
        refused = self._check_key(key)
        if refused is not None:
            return refused
        if not self.config.can_see(key, model):
            body = responses.model_not_found_body(model, "get")
            return Reply.of(404, body, "model_not_found")
        return Reply.of(200, responses.model_resource(upstream_model(model)))

    def answer_openai(
        self, endpoint: str, key: str, raw: bytes, content_type: str
    ) -> tuple[str, Reply]:
        """The whole decision for one Images call, and the model it named (for the log).

        Unlike Gemini's, the body is read before the quota is counted: OpenAI's
        limits are per model, and the model is in the body.
        """
        self.state.count_request()
        if not key:
            return "-", Reply.of(401, openai.missing_key_body(), "no_key")
        if key in self.config.invalid_keys:
            return "-", Reply.of(401, openai.invalid_key_body(key), "api_key_invalid")
        try:
            if endpoint == "edits":
                request = openai.parse_edits(raw, content_type)
            else:
                request = openai.parse_generations(raw)
        except openai.InvalidRequest as exc:
            return "-", Reply.of(400, exc.body(), "invalid_argument")
        refused = self.state.check_quota(key)
        if refused is not None:
            return request.model, openai_refusal(request.model, refused)
        try:
            fault = self.state.fault_for(request.prompt, key)
        except BadRequest as exc:
            body = openai.InvalidRequest(str(exc), param="prompt").body()
            return request.model, Reply.of(400, body, "invalid_argument")
        self.stopping.wait(self._latency(fault))
        return request.model, self._openai_reply(request, fault)

    def _openai_reply(self, req: openai.ImagesRequest, fault: str | None) -> Reply:
        match fault:
            case None | "truncated" | "slow_queue":
                return self._openai_generated(req, fault)
            case "no_image" | "text_only":  # the Images API has no text answer: nothing made
                return Reply.of(200, openai.image_body(req, []), fault)
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
            case "rate_limit":
                limit = self.config.rpm or FREE_TIER_RPM
                refusal = Refusal(per_day=False, wait=INJECTED_RETRY_DELAY, limit=limit)
                return openai_refusal(req.model, refusal, fault)
            case "daily_quota" | "out_of_credit":
                return openai_refusal(req.model, self.state.injected_daily(), fault)
            case "unavailable" | "saturated" | "capacity":
                return Reply.of(503, openai.unavailable_body(), fault)
            case "internal":
                return Reply.of(500, openai.internal_body(), fault)
            case "region":
                return Reply.of(403, openai.region_refused_body(), fault)
            case "deadline":
                return Reply.of(504, openai.timeout_body(), fault)
            case "prompt_block" | "image_safety":
                return Reply.of(400, openai.blocked_body(req.model), fault)
            case "malformed":
                whole = json.dumps(openai.image_body(req, []), indent=2).encode()
                return Reply(200, whole[: len(whole) // 2], fault)
        raise AssertionError(f"unhandled fault {fault}")

    def _openai_generated(self, req: openai.ImagesRequest, fault: str | None) -> Reply:
        width, height = req.dimensions()
        image = render_image(req.prompt, width, height, openai.OUTPUT_FORMATS[req.output_format])
        body = openai.image_body(req, [image] * req.n)
        if fault == "truncated":
            item = body["data"][0]
            # Cut on a 4-character boundary: the base64 still decodes, the image does not.
            item["b64_json"] = item["b64_json"][: len(item["b64_json"]) * 2 // 5 // 4 * 4]
        return Reply.of(200, body, fault or "ok")


def _page_size(raw: str) -> int:
    """models.list's pageSize: unset or 0 is the default page, more than 1000 is 1000."""
    if not raw:
        return MODELS_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid value at 'page_size' (TYPE_INT32), {json.dumps(raw)}") from None
    if size < 0:
        raise BadRequest("page_size must not be negative.")  # the sandbox's wording
    return min(size, MAX_MODELS_PAGE_SIZE) or MODELS_PAGE_SIZE


def _page_token(offset: int) -> str:
    """An opaque token for the page starting at ``offset`` (Google's are opaque too)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_offset(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest("Invalid page token.")  # the sandbox's wording
    return offset
