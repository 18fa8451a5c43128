"""OpenAI Images API: ``/v1/images/generations``, ``/v1/images/edits``, ``/v1/models``
and ``/v1/models/{model}``.

Point the ``openai`` SDK at ``https://<instance>/v1`` with a nanoweb token as the
API key. Each request runs the same jobs, quotas and ledger as the studio; the
answer waits for the images (see ``waiting``) and lands in the gallery too.
"""

from __future__ import annotations

import time
from typing import Literal

from asgiref.sync import sync_to_async
from django.http import JsonResponse
from ninja import File, Form, Router, Schema
from ninja.files import UploadedFile
from pydantic import ConfigDict, Field

from generations import images, jobs
from generations.api import inline, mapping, results, waiting
from generations.api.auth import TokenAuth
from generations.api.errors import ApiError
from generations.models import Generation, ModelSpec

router = Router(auth=TokenAuth(), tags=["OpenAI-compatible images"])

ResponseFormat = Literal["b64_json", "url"]
OutputFormat = Literal["png", "jpeg", "webp"]


class ImageGenerationIn(Schema):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(..., max_length=32000, description="What to draw.")
    model: str | None = Field(None, description="A model id from GET /v1/models.")
    n: int = Field(1, ge=1, le=10, description="How many images (one job each).")
    size: str | None = Field("auto", description="auto or WIDTHxHEIGHT, e.g. 1536x1024.")
    quality: str | None = Field("auto", description="auto, low, medium, high, standard, hd.")
    response_format: ResponseFormat | None = "b64_json"
    output_format: OutputFormat | None = None
    background: str | None = None
    aspect_ratio: str | None = Field(None, description="nanoweb: overrides size, e.g. 16:9.")
    image_size: str | None = Field(None, description="nanoweb: overrides quality: 1K, 2K, 4K.")
    stream: bool | None = Field(None, description="Not supported: true is refused with a 400.")
    partial_images: int | None = Field(
        None, description="Not supported: anything but 0 is refused with a 400."
    )


def _model(m: ModelSpec) -> dict:
    return {
        "id": m.slug,
        "object": "model",
        "created": 1_700_000_000,
        "owned_by": "nanoweb",
        "shutdown_date": m.shutdown_date.isoformat() if m.shutdown_date else None,
        "name": m.name,
        "aspect_ratios": m.aspect_ratios,
        "sizes": m.sizes,
        "max_reference_images": m.max_reference_images,
    }


@router.get("/models", summary="Models this token may use", url_name="openai-models")
def list_models(request):
    return {"object": "list", "data": [_model(m) for m in mapping.models_for(request.auth)]}


@router.get("/models/{model}", summary="One model this token may use", url_name="openai-model")
def retrieve_model(request, model: str):
    return _model(mapping.model_for(request.auth, model))


@router.post("/images/generations", summary="Create images from a prompt")
async def create_image(request, body: ImageGenerationIn):
    user = request.auth
    _refuse_streaming(body.stream, body.partial_images)
    model = await sync_to_async(mapping.find_model)(body.model)
    _refuse_unsupported(body.background)
    shape = _shape(model, body.size, body.quality, body.aspect_ratio, body.image_size)
    req = jobs.JobRequest(
        model=model,
        prompt=body.prompt,
        aspect_ratio=shape.aspect_ratio,
        image_size=shape.image_size,
        count=body.n,
    )
    direct = {"aspect_ratio": "aspect_ratio", "image_size": "image_size"}
    return await _run(
        request,
        user,
        req,
        body.response_format,
        body.output_format,
        params=direct if body.aspect_ratio or body.image_size else None,
    )


@router.post("/images/edits", summary="Edit or combine reference images with a prompt")
async def edit_image(
    request,
    prompt: str = Form(..., max_length=32000),
    model: str | None = Form(None),
    n: int = Form(1, ge=1, le=10),
    size: str | None = Form("auto"),
    quality: str | None = Form("auto"),
    response_format: ResponseFormat | None = Form("b64_json"),
    output_format: OutputFormat | None = Form(None),
    background: str | None = Form(None),
    image: list[UploadedFile] = File(None, description="One or more images (also image[])."),
    mask: UploadedFile | None = File(None),
    stream: str | None = Form(None, description="Not supported: true is refused with a 400."),
    partial_images: str | None = Form(
        None, description="Not supported: anything but 0 is refused with a 400."
    ),
):
    user = request.auth
    _refuse_streaming(stream, partial_images)
    spec = await sync_to_async(mapping.find_model)(model)
    _refuse_unsupported(background)
    if mask is not None and not spec.supports_mask:
        raise ApiError(400, jobs.no_mask(spec), param="mask", code="unsupported_value")
    uploads = list(image or []) + request.FILES.getlist("image[]")
    if not uploads:
        raise ApiError(
            400,
            "Attach at least one image to edit (field 'image').",
            param="image",
            code="missing_required_parameter",
        )
    if len(uploads) > spec.max_reference_images:
        raise ApiError(
            400, jobs.too_many_references(spec, len(uploads)), param="image", code="invalid_value"
        )
    references = await sync_to_async(_clean_uploads)(uploads)
    cleaned_mask = (
        await sync_to_async(_clean_uploads)([mask], "mask", images.clean_mask) if mask else [None]
    )
    shape = _shape(spec, size, quality, None, None)
    req = jobs.JobRequest(
        model=spec,
        prompt=prompt,
        aspect_ratio=shape.aspect_ratio,
        image_size=shape.image_size,
        count=n,
        references=references,
        reference_names=[u.name or "image" for u in uploads],
        mask=cleaned_mask[0],
    )
    return await _run(request, user, req, response_format, output_format)


def _clean_uploads(uploads, param: str = "image", clean=images.clean_image) -> list:
    cleaned = []
    for upload in uploads:
        try:
            images.refuse_oversize(upload.name or param, upload.size)
            cleaned.append(clean(upload.read(), name=upload.name or param))
        except images.ImageRejected as exc:
            status = 413 if exc.too_large else 400
            raise ApiError(status, exc.message, param=param, code="invalid_image") from exc
    return cleaned


def _refuse_streaming(stream, partial_images) -> None:
    """nanoweb answers with finished images in one response: no event stream, no partial
    images. Refused before anything is reserved, so a client is never charged for an
    answer it cannot read."""
    if str(stream).strip().lower() not in ("none", "false", "0", ""):
        raise ApiError(
            400,
            "Streaming is not supported: this API answers with the finished images in one "
            "response. Leave out stream or set it to false.",
            param="stream",
            code="unsupported_value",
        )
    if str(partial_images).strip().lower() not in ("none", "0", ""):
        raise ApiError(
            400,
            "Partial images are not supported: this API answers with the finished images "
            "only. Leave out partial_images or set it to 0.",
            param="partial_images",
            code="unsupported_value",
        )


def _refuse_unsupported(background: str | None) -> None:
    if background and background not in ("auto", "opaque"):
        raise ApiError(
            400,
            "Transparent backgrounds are not supported by these models.",
            param="background",
            code="unsupported_value",
        )


def _shape(model, size, quality, aspect_ratio, image_size) -> mapping.Shape:
    if aspect_ratio or image_size:
        return mapping.direct_shape(model, aspect_ratio, image_size)
    return mapping.openai_shape(model, size, quality)


async def _run(request, user, req, response_format, output_format, params=None) -> JsonResponse:
    gens, run_here = await inline.call(
        waiting.submit,
        user,
        req,
        idempotency_key=request.headers.get("Idempotency-Key"),
        params=params,
        run_here=inline.enabled(),
    )
    done, gens = await waiting.finish(gens, run_here)
    if not done:
        raise results.timeout(gens)
    made = [g for g in gens if g.status == Generation.SUCCEEDED]
    if not made:
        raise results.failure(gens)
    body = await inline.call(_body, request, made, gens, response_format, output_format)
    return JsonResponse(body)


def _body(request, made, gens, response_format, output_format) -> dict:
    data = []
    for gen in made:
        item = (
            {"url": results.signed_url(request, gen, output_format)}
            if response_format == "url"
            else {"b64_json": results.b64(gen, output_format)}
        )
        if gen.upstream_text:
            item["revised_prompt"] = gen.upstream_text
        data.append(item)
    first = made[0].image
    mime = results.FORMATS[output_format][1] if output_format else first.mime_type
    return {
        "created": int(time.time()),
        "data": data,
        "output_format": mime.split("/")[1],
        "size": f"{first.width}x{first.height}",
        "usage": results.openai_usage(made),
        "nanoweb": {
            **results.cost(gens),
            "failed": [
                {"id": str(g.pk), "reason": g.failure_title}
                for g in gens
                if g.status != Generation.SUCCEEDED
            ],
        },
    }
