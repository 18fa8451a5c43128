"""What finished jobs look like to API clients: image bytes, signed links, usage, failures."""

from __future__ import annotations

import base64
import io

from django.conf import settings
from django.core import signing
from django.urls import reverse
from PIL import Image as PILImage

from accounts.models import csv_usd
from generations.api.errors import ApiError
from generations.models import Generation

SIGNER_SALT = "nanoweb.api.media"
FORMATS = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}


def image_bytes(gen: Generation, output_format: str | None = None) -> tuple[bytes, str]:
    """The stored image, re-encoded only when another format was asked for."""
    with gen.image.file.open("rb") as handle:
        data = handle.read()
    mime = gen.image.mime_type
    if not output_format or FORMATS[output_format][1] == mime:
        return data, mime
    fmt, mime = FORMATS[output_format]
    with PILImage.open(io.BytesIO(data)) as im:
        out = io.BytesIO()
        (im.convert("RGB") if fmt == "JPEG" else im).save(out, fmt, quality=95)
    return out.getvalue(), mime


def b64(gen: Generation, output_format: str | None = None) -> str:
    return base64.b64encode(image_bytes(gen, output_format)[0]).decode()


def signed_url(request, gen: Generation, output_format: str | None = None) -> str:
    """A link to the image that works without a token until it expires."""
    value = signing.dumps(
        {"g": str(gen.pk), "f": output_format or ""}, salt=SIGNER_SALT, compress=True
    )
    return request.build_absolute_uri(reverse("api-media", args=[value]))


def unsign(value: str) -> tuple[str, str | None]:
    """→ (generation id, format); ApiError 410 when expired, 403 when forged."""
    try:
        data = signing.loads(value, salt=SIGNER_SALT, max_age=settings.NANOWEB_API_URL_TTL_SECONDS)
    except signing.SignatureExpired as exc:
        raise ApiError(
            410,
            "This image link has expired; fetch the image again through the API for a fresh link.",
            code="link_expired",
        ) from exc
    except signing.BadSignature as exc:
        raise ApiError(403, "This image link is not valid.", code="bad_signature") from exc
    return data["g"], data["f"] or None


def usage(gens: list[Generation]) -> dict[str, int]:
    total = {
        "input_tokens": 0,
        "input_image_tokens": 0,
        "output_text_tokens": 0,
        "output_image_tokens": 0,
        "thinking_tokens": 0,
        "total_tokens": 0,
    }
    for gen in gens:
        for key in total:
            total[key] += int((gen.usage or {}).get(key, 0) or 0)
    return total


def openai_usage(gens: list[Generation]) -> dict:
    u = usage(gens)
    output = u["output_text_tokens"] + u["output_image_tokens"] + u["thinking_tokens"]
    return {
        "input_tokens": u["input_tokens"],
        "input_tokens_details": {
            "text_tokens": u["input_tokens"] - u["input_image_tokens"],
            "image_tokens": u["input_image_tokens"],
        },
        "output_tokens": output,
        "output_tokens_details": {
            "image_tokens": u["output_image_tokens"],
            "text_tokens": u["output_text_tokens"] + u["thinking_tokens"],
        },
        "total_tokens": u["total_tokens"] or u["input_tokens"] + output,
    }


def cost(gens: list[Generation]) -> dict:
    charged = sum(g.actual_micros or 0 for g in gens)
    return {
        "cost_usd": csv_usd(charged),
        "cost_micros": charged,
        "job_ids": [str(g.pk) for g in gens],
    }


def failure(gens: list[Generation]) -> ApiError:
    """Every job failed: one error saying why, in the words the studio uses."""
    failed = [g for g in gens if g.status != Generation.SUCCEEDED]
    first = failed[0]
    refund = " Nothing was charged." if all(g.refunded for g in failed) else ""
    message = f"{first.failure_title}: {first.error_message or 'no image came back'}.{refund}"
    message = message.replace("..", ".")
    ids = {"job_ids": [str(g.pk) for g in gens]}
    if first.error_kind == "blocked":
        return ApiError(400, message, code="moderation_blocked", extra=ids)
    if first.error_kind in ("permanent", "no_image"):
        return ApiError(
            422 if first.error_kind == "no_image" else 400,
            message,
            code=first.error_kind,
            extra=ids,
        )
    if first.error_kind == "cancelled":
        return ApiError(409, message, code="cancelled", extra=ids)
    if first.error_kind == "not_saved":
        return ApiError(503, message, code="storage_unavailable", extra=ids)
    return ApiError(503, message, code="upstream_unavailable", extra=ids)


def timeout(gens: list[Generation]) -> ApiError:
    ids = [str(g.pk) for g in gens]
    return ApiError(
        504,
        f"The image{'s are' if len(ids) > 1 else ' is'} still being made after "
        f"{settings.NANOWEB_API_WAIT_SECONDS} s. Nothing is lost: "
        f"{'they' if len(ids) > 1 else 'it'} will appear in your gallery, and "
        f"GET /api/v1/generations/{gens[0].request_id} "
        f"shows the progress (job {', '.join(ids)}).",
        code="timeout",
        extra={"job_ids": ids, "request_id": str(gens[0].request_id)},
    )
