"""Gemini API: ``POST /v1beta/models/{model}:generateContent`` (and the streaming twin),
``GET /v1beta/models`` and ``GET /v1beta/models/{model}`` (also under ``/v1``, the
``google-genai`` SDK's default, and ``/v1alpha``).

Point the ``google-genai`` SDK at the instance (``HttpOptions(base_url=...)``) with a
nanoweb token as the API key. The request's last user turn gives the prompt (its
text parts) and the reference images (its ``inlineData`` parts); the answer has the
shape the real API gives, with the images as ``inlineData``.
"""

from __future__ import annotations

import base64
import binascii
import json

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse, StreamingHttpResponse
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

from generations import jobs
from generations.api import inline, mapping, results, waiting
from generations.api.auth import gemini_user_for
from generations.api.errors import NESTED_TOO_DEEPLY, ApiError
from generations.models import Generation, ModelSpec, Route

PARAMS = {
    "aspect_ratio": "generationConfig.imageConfig.aspectRatio",
    "image_size": "generationConfig.imageConfig.imageSize",
    "count": "generationConfig.candidateCount",
    "references": "contents.parts.inlineData",
    "prompt": "contents.parts.text",
    "model": "model",
    "thinking_level": "generationConfig.thinkingConfig.thinkingLevel",
    "grounding": "tools",
}
FINISH_BLOCKED = "IMAGE_SAFETY"
GENERATE = ("POST",)
READ = ("GET",)
# Google's published token limits for its image models, by the upstream id that runs;
# models not listed get those of the Gemini 3 image models.
TOKEN_LIMITS = {"gemini-2.5-flash-image": (32_768, 32_768)}
DEFAULT_TOKEN_LIMITS = (65_536, 32_768)
PAGE_SIZE, MAX_PAGE_SIZE = 50, 1000  # as Google's models.list


def _get(obj: dict, camel: str, snake: str, default=None):
    """Google clients send camelCase; the REST API accepts snake_case too."""
    if not isinstance(obj, dict):
        return default
    return obj.get(camel, obj.get(snake, default))


def _parse(model, body) -> jobs.JobRequest:
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", param="body")
    contents = body.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    if not isinstance(contents, list) or not contents:
        raise ApiError(
            400, "contents is required: a list of turns with text parts.", param="contents"
        )
    turn = next(
        (c for c in reversed(contents) if isinstance(c, dict) and c.get("role", "user") == "user"),
        None,
    )
    parts = turn.get("parts") if turn else None
    if not isinstance(parts, list) or not parts:
        raise ApiError(400, "The last user turn in contents has no parts.", param="contents")
    texts, refs = [], []
    for i, part in enumerate(parts):
        if not isinstance(part, dict):
            raise ApiError(400, f"contents.parts[{i}] must be an object.", param="contents")
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        inline = _get(part, "inlineData", "inline_data")
        if inline is not None:
            refs.append(_image(inline, i))
    config = _get(body, "generationConfig", "generation_config", {}) or {}
    if not isinstance(config, dict):
        raise ApiError(400, "generationConfig must be an object.", param="generationConfig")
    modalities = _get(config, "responseModalities", "response_modalities")
    if modalities and "IMAGE" not in [str(m).upper() for m in modalities]:
        raise ApiError(
            400,
            "These models answer with images: include IMAGE in "
            "generationConfig.responseModalities.",
            param="generationConfig.responseModalities",
        )
    image_config = _get(config, "imageConfig", "image_config", {}) or {}
    count = _get(config, "candidateCount", "candidate_count", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        raise ApiError(
            400, "candidateCount must be a whole number.", param="generationConfig.candidateCount"
        )
    shape = mapping.direct_shape(
        model,
        _get(image_config, "aspectRatio", "aspect_ratio"),
        _get(image_config, "imageSize", "image_size"),
    )
    return jobs.JobRequest(
        model=model,
        prompt="\n".join(texts),
        aspect_ratio=shape.aspect_ratio,
        image_size=shape.image_size,
        count=count,
        references=refs,
        thinking_level=_thinking_level(config),
        grounding=_grounding(body),
    )


def _thinking_level(config: dict) -> str | None:
    """``generationConfig.thinkingConfig.thinkingLevel`` (the model checks the value)."""
    thinking = _get(config, "thinkingConfig", "thinking_config", {}) or {}
    if not isinstance(thinking, dict):
        raise ApiError(400, "thinkingConfig must be an object.", param=PARAMS["thinking_level"])
    level = _get(thinking, "thinkingLevel", "thinking_level")
    if level is None:
        return None
    if not isinstance(level, str):
        raise ApiError(
            400, 'thinkingLevel must be text, e.g. "high".', param=PARAMS["thinking_level"]
        )
    return level.strip().lower() or None


def _grounding(body: dict) -> bool:
    """``tools: [{"googleSearch": {}}]`` asks for Search grounding; no other tool is served
    (refused rather than dropped)."""
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise ApiError(400, "tools must be a list.", param="tools")
    grounding = False
    for tool in tools:
        names = set(tool) if isinstance(tool, dict) else set()
        if names and names <= {"googleSearch", "google_search"}:
            grounding = True
        else:
            raise ApiError(
                400, "The only tool these models take here is googleSearch.", param="tools"
            )
    return grounding


def _image(inline, i: int):
    param = f"contents.parts[{i}].inlineData"
    data = _get(inline, "data", "data")
    if not isinstance(data, str):
        raise ApiError(400, f"{param}.data must be base64 text.", param=param)
    return mapping.image_from_base64(
        data, field=f"{param}.data", name=f"Image {i + 1}", param=param
    )


def _admit(request, model_name: str) -> tuple[list[Generation], bool]:
    user = gemini_user_for(request)
    try:
        body = json.loads(request.body or b"null")
    except (RequestDataTooBig, RawPostDataException) as exc:
        raise ApiError(413, "The request body is too large.", param="body") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}", param="body") from exc
    except RecursionError:
        raise ApiError(400, NESTED_TOO_DEEPLY, param="body") from None
    model = mapping.find_model(model_name)
    return waiting.submit(user, _parse(model, body), params=PARAMS, run_here=inline.enabled())


def _upstream_name(gen: Generation) -> str:
    """The model that really ran (its route's upstream id), for ``modelVersion``."""
    if gen.route_id:
        return gen.route.upstream_model
    route = Route.objects.usable().filter(model_id=gen.model_id).first()
    return route.upstream_model if route else gen.model.slug


def _usage(gens: list[Generation]) -> dict:
    u = results.usage(gens)
    out = {
        "promptTokenCount": u["input_tokens"],
        "candidatesTokenCount": u["output_text_tokens"] + u["output_image_tokens"],
        "totalTokenCount": u["total_tokens"],
    }
    if u["thinking_tokens"]:
        out["thoughtsTokenCount"] = u["thinking_tokens"]
    prompt = [{"modality": "TEXT", "tokenCount": u["input_tokens"] - u["input_image_tokens"]}]
    if u["input_image_tokens"]:
        prompt.append({"modality": "IMAGE", "tokenCount": u["input_image_tokens"]})
    out["promptTokensDetails"] = prompt
    if u["output_image_tokens"]:
        out["candidatesTokensDetails"] = [
            {"modality": "IMAGE", "tokenCount": u["output_image_tokens"]}
        ]
    return out


def _candidate(gen: Generation, index: int) -> dict:
    if gen.status != Generation.SUCCEEDED:
        reason = FINISH_BLOCKED if gen.error_kind == "blocked" else "OTHER"
        return {
            "content": {"role": "model", "parts": []},
            "finishReason": reason,
            "finishMessage": f"{gen.failure_title}. {gen.error_message}".strip(),
            "index": index,
        }
    data, mime = results.image_bytes(gen)
    parts = [{"text": gen.upstream_text}] if gen.upstream_text else []
    parts.append({"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}})
    return {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": index}


def _response(gens: list[Generation], candidates: list[dict]) -> dict:
    return {
        "candidates": candidates,
        "usageMetadata": _usage(gens),
        "modelVersion": _upstream_name(gens[0]),
        "responseId": str(gens[0].request_id),
    }


def _check_outcome(gens: list[Generation]) -> None:
    """All failed for a reason other than safety → an error status, as Google would."""
    if any(g.status == Generation.SUCCEEDED or g.error_kind == "blocked" for g in gens):
        return
    raise results.failure(gens)


async def _run(request, model_name: str) -> list[Generation]:
    gens, run_here = await inline.call(_admit, request, model_name)
    done, gens = await waiting.finish(gens, run_here)
    if not done:
        raise results.timeout(gens)
    _check_outcome(gens)
    return gens


@csrf_exempt
async def generate_content(request, model: str):
    if request.method not in GENERATE:
        return ApiError.not_allowed(request.method, request.path, GENERATE).gemini()
    try:
        gens = await _run(request, model)
        body = await inline.call(
            lambda: _response(gens, [_candidate(g, i) for i, g in enumerate(gens)])
        )
    except ApiError as exc:
        return exc.gemini()
    return JsonResponse(body)


@csrf_exempt
async def stream_generate_content(request, model: str):
    """Whole-image events: one chunk per image, usage on the last, as ``alt=sse`` or JSON."""
    if request.method not in GENERATE:
        return ApiError.not_allowed(request.method, request.path, GENERATE).gemini()
    try:
        gens = await _run(request, model)
        chunks = await sync_to_async(lambda: [_response(gens, [_candidate(g, 0)]) for g in gens])()
    except ApiError as exc:
        return exc.gemini()
    if request.GET.get("alt") != "sse":
        return JsonResponse(chunks, safe=False)

    async def events():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\r\n\r\n".encode()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    return response


def _upstream_ids(models: list[ModelSpec]) -> dict[int, str]:
    """Each model's first usable route's upstream id: what a request to it runs now."""
    ids: dict[int, str] = {}
    for route in Route.objects.usable().filter(model__in=models):
        ids.setdefault(route.model_id, route.upstream_model)
    return ids


def _model_entry(model: ModelSpec, upstream: str | None) -> dict:
    """A ``Model`` as Google's ``models.list``/``models.get`` give it; ``version`` is the
    upstream id that runs it (what ``modelVersion`` names in answers)."""
    inputs, outputs = TOKEN_LIMITS.get(upstream or "", DEFAULT_TOKEN_LIMITS)
    description = model.description
    if model.is_deprecated:
        instead = f" Use {model.replacement.label} instead." if model.replacement_id else ""
        description = f"{description} Deprecated by its provider.{instead}".strip()
    return {
        "name": f"models/{model.slug}",
        "baseModelId": model.slug,
        "version": upstream or model.slug,
        "displayName": model.label,
        "description": description,
        "inputTokenLimit": inputs,
        "outputTokenLimit": outputs,
        "supportedGenerationMethods": ["generateContent"],
    }


def _page(request) -> tuple[int, int]:
    """(page size, offset) from ``pageSize`` and ``pageToken``, as Google pages lists."""
    raw = request.GET.get("pageSize") or request.GET.get("page_size") or ""
    try:
        size = int(raw) if raw else PAGE_SIZE
    except ValueError:
        size = -1
    if size < 0:
        raise ApiError(400, "pageSize must be a whole number of 0 or more.", param="pageSize")
    size = min(size or PAGE_SIZE, MAX_PAGE_SIZE)
    token = request.GET.get("pageToken") or request.GET.get("page_token") or ""
    if not token:
        return size, 0
    try:
        kind, _, offset = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if kind != "models" or not offset.isdigit():
            raise ValueError(token)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise ApiError(
            400,
            "pageToken is not one this API gave out; list again without it.",
            param="pageToken",
        ) from exc
    return size, int(offset)


def _next_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"models:{offset}".encode()).decode()


@csrf_exempt
def list_models(request):
    """``GET /v1beta/models``: the models this token's user may use, in pages."""
    if request.method not in READ:
        return ApiError.not_allowed(request.method, request.path, READ).gemini()
    try:
        models = mapping.models_for(gemini_user_for(request))
        size, start = _page(request)
    except ApiError as exc:
        return exc.gemini()
    page = models[start : start + size]
    upstream = _upstream_ids(page)
    body: dict = {"models": [_model_entry(m, upstream.get(m.pk)) for m in page]}
    if start + size < len(models):
        body["nextPageToken"] = _next_token(start + size)
    return JsonResponse(body)


@csrf_exempt
def get_model(request, model: str):
    """``GET /v1beta/models/{model}``: by slug, upstream id or alias; 404 when unknown or
    not this user's to use."""
    if request.method not in READ:
        return ApiError.not_allowed(request.method, request.path, READ).gemini()
    try:
        spec = mapping.model_for(gemini_user_for(request), model)
    except ApiError as exc:
        return exc.gemini()
    return JsonResponse(_model_entry(spec, _upstream_ids([spec]).get(spec.pk)))


@csrf_exempt
def unknown_method(request, model: str, method: str):
    """``models/{model}:countTokens`` and the like: a 404 saying what is served."""
    return ApiError(
        404,
        f"This instance does not serve models/{model}:{method}. Its models take "
        "generateContent and streamGenerateContent.",
        code="not_found",
    ).gemini()
