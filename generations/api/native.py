"""The native jobs API: submit, then poll — for scripts that should not hold a connection.

``POST /api/v1/generations`` answers 202 at once with the request's id; one request
makes ``n`` images (one job each). ``Idempotency-Key`` makes a retried POST return
the same request instead of paying again.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid

from django.db.models import Min
from ninja import Field, Query, Router, Schema, Status

from accounts.models import csv_usd
from generations import jobs
from generations.api import mapping, results, waiting
from generations.api.auth import TokenAuth
from generations.api.errors import ApiError
from generations.models import Generation

router = Router(auth=TokenAuth(), tags=["Jobs"])

PARAMS = {
    "aspect_ratio": "aspect_ratio",
    "image_size": "image_size",
    "count": "n",
    "references": "reference_images",
}


class GenerationIn(Schema):
    prompt: str = Field(..., max_length=32000)
    model: str | None = Field(None, description="A model id from GET /v1/models.")
    aspect_ratio: str | None = Field(None, description="e.g. 1:1, 3:2, 16:9.")
    image_size: str | None = Field(None, description="1K, 2K or 4K where the model has sizes.")
    n: int = Field(1, ge=1, le=10)
    reference_images: list[str] = Field(
        default_factory=list,
        max_length=14,
        description="Images to edit or combine: base64, or data: URLs (PNG, JPEG, WebP).",
    )


class ImageOut(Schema):
    id: uuid.UUID
    status: str
    stage: str
    error: str | None = None
    refunded: bool
    reserved_usd: str
    cost_usd: str | None = None
    made_by: str | None = None  # the model that made it, when not the one asked for
    width: int | None = None
    height: int | None = None
    url: str | None = None


class RequestOut(Schema):
    id: uuid.UUID
    status: str
    created: dt.datetime
    model: str
    prompt: str
    aspect_ratio: str
    image_size: str | None
    n: int
    counts: dict[str, int]
    images: list[ImageOut]


class PageOut(Schema):
    data: list[RequestOut]
    next_cursor: str | None


def _status(gens: list[Generation]) -> str:
    states = {g.status for g in gens}
    if states & {Generation.QUEUED, Generation.RUNNING}:
        return "running" if Generation.RUNNING in states or len(states) > 1 else "queued"
    if states == {Generation.SUCCEEDED}:
        return "succeeded"
    if Generation.SUCCEEDED in states:
        return "partial"
    return "cancelled" if states == {Generation.CANCELLED} else "failed"


def _image(request, gen: Generation) -> dict:
    done = gen.status == Generation.SUCCEEDED and hasattr(gen, "image")
    return {
        "id": gen.pk,
        "status": gen.status,
        "stage": gen.stage_label,
        "error": f"{gen.failure_title}: {gen.error_message}".rstrip(": ")
        if gen.status in (Generation.FAILED, Generation.CANCELLED)
        else None,
        "refunded": gen.refunded,
        "reserved_usd": csv_usd(gen.reserved_micros),
        "cost_usd": None if gen.actual_micros is None else csv_usd(gen.actual_micros),
        "made_by": _made_by(gen),
        "width": gen.image.width if done else None,
        "height": gen.image.height if done else None,
        "url": results.signed_url(request, gen) if done else None,
    }


def _made_by(gen: Generation) -> str | None:
    """A stand-in model: the admin's fallback model, or the provider's own (Replicate's
    capacity fallback)."""
    if gen.served_by:
        return gen.served_by
    if gen.route is not None and gen.route.model_id != gen.model_id:
        return gen.route.model.slug
    return None


def _out(request, gens: list[Generation]) -> dict:
    first = gens[0]
    counts = {s: 0 for s in ("queued", "running", "succeeded", "failed", "cancelled")}
    for gen in gens:
        counts[gen.status] += 1
    return {
        "id": first.request_id,
        "status": _status(gens),
        "created": first.created,
        "model": first.model.slug,
        "prompt": first.prompt,
        "aspect_ratio": first.aspect_ratio,
        "image_size": first.image_size or None,
        "n": len(gens),
        "counts": counts,
        "images": [_image(request, g) for g in gens],
    }


def _jobs_of(user, request_id) -> list[Generation]:
    gens = list(
        Generation.objects.filter(user=user, request_id=request_id)
        .select_related("model", "image", "route__model")
        .order_by("created")
    )
    if not gens:
        raise ApiError(
            404, f"No generation {request_id} among yours.", param="id", code="not_found"
        )
    return gens


def _decode(value: str, i: int):
    name = f"reference_images[{i}]"
    data = value.split(",", 1)[1] if value.startswith("data:") else value
    return mapping.image_from_base64(data, field=name, name=name, param=name, code="invalid_image")


@router.post("/generations", response={202: RequestOut}, summary="Start making images")
def create_generation(request, body: GenerationIn):
    model = mapping.find_model(body.model)
    shape = mapping.direct_shape(model, body.aspect_ratio, body.image_size)
    refs = [_decode(v, i) for i, v in enumerate(body.reference_images)]
    req = jobs.JobRequest(
        model=model,
        prompt=body.prompt,
        aspect_ratio=shape.aspect_ratio,
        image_size=shape.image_size,
        count=body.n,
        references=refs,
    )
    gens, _ = waiting.submit(
        request.auth, req, params=PARAMS, idempotency_key=request.headers.get("Idempotency-Key")
    )
    return Status(202, _out(request, _jobs_of(request.auth, gens[0].request_id)))


@router.get("/generations", response=PageOut, summary="Your requests, newest first")
def list_generations(
    request, cursor: str | None = Query(None), limit: int = Query(20, ge=1, le=100)
):
    groups = (
        Generation.objects.filter(user=request.auth)
        .values("request_id")
        .annotate(first=Min("created"))
        .order_by("-first", "-request_id")
    )
    if cursor:
        try:
            when, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("~", 1)
            when, rid = dt.datetime.fromisoformat(when), uuid.UUID(rid)
        except (ValueError, UnicodeError, binascii.Error) as exc:
            raise ApiError(
                400,
                "cursor is not one this API gave out; start without it.",
                param="cursor",
                code="invalid_value",
            ) from exc
        groups = groups.filter(first__lte=when).exclude(first=when, request_id__gte=rid)
    page = list(groups[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    ids = [g["request_id"] for g in page]
    by_request: dict = {rid: [] for rid in ids}
    for gen in (
        Generation.objects.filter(user=request.auth, request_id__in=ids)
        .select_related("model", "image", "route__model")
        .order_by("created")
    ):
        by_request[gen.request_id].append(gen)
    last = page[-1] if page else None
    return {
        "data": [_out(request, by_request[rid]) for rid in ids],
        "next_cursor": base64.urlsafe_b64encode(
            f"{last['first'].isoformat()}~{last['request_id']}".encode()
        ).decode()
        if more
        else None,
    }


@router.get("/generations/{request_id}", response=RequestOut, summary="One request")
def get_generation(request, request_id: uuid.UUID):
    return _out(request, _jobs_of(request.auth, request_id))


@router.post(
    "/generations/{request_id}/cancel",
    response=RequestOut,
    summary="Cancel the images not started yet (their reservation comes back)",
)
def cancel_generation(request, request_id: uuid.UUID):
    gens = _jobs_of(request.auth, request_id)
    if not jobs.cancel(request.auth, request_id) and not any(
        g.status == Generation.CANCELLED for g in gens
    ):
        raise ApiError(
            409,
            "Nothing left to cancel: every image has started or finished.",
            code="not_cancellable",
        )
    return _out(request, _jobs_of(request.auth, request_id))
