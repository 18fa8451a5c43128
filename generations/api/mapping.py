"""From what API clients send to what a model can do, refusing instead of downgrading.

OpenAI ``size`` (``WIDTHxHEIGHT`` or ``auto``) picks the model's aspect ratio closest
to WIDTH:HEIGHT; the longer side and ``quality`` pick the image size:

=======================  ===========  =========================================
size (longer side)       quality      imageSize (models with sizes)
=======================  ===========  =========================================
``auto`` / ≤ 1536        any but high  1K
``auto`` / ≤ 1536        high, hd      2K
1537 – 3072              any           2K
> 3072 (up to 4096)      any           4K
=======================  ===========  =========================================

A model with one fixed size (Nano Banana) takes ``auto``, sizes up to 1536 and
qualities other than high/hd; anything larger is refused with a 400 naming the
parameter. nanoweb also accepts ``aspect_ratio`` and ``image_size`` directly.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass

from django.db.models import Q

from generations import catalog, images
from generations.api.errors import ApiError
from generations.models import ModelSpec

SIZE_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
QUALITIES = {"auto", "low", "medium", "high", "standard", "hd"}
HIGH = {"high", "hd"}
MAX_SIDE = 4096


@dataclass(frozen=True)
class Shape:
    aspect_ratio: str
    image_size: str | None


def find_model(name: str | None, *, param: str = "model") -> ModelSpec:
    """A model by its nanoweb slug or by the Gemini model name it stands for."""
    models = ModelSpec.objects.available()
    if not name:
        first = models.exclude(is_sandbox=True).first() or models.first()
        if first is None:
            raise ApiError(
                503, "No image model is available on this instance yet.", code="model_not_available"
            )
        return first
    name = name.removeprefix("models/")
    found = models.filter(slug=name).first()
    if found is None:
        slugs = [m["slug"] for m in catalog.MODELS if m["upstream"] == name]
        found = (
            models.filter(slug__in=slugs).exclude(is_sandbox=True).first()
            or models.filter(Q(slug__in=slugs)).first()
        )
    if found is None:
        offered = ", ".join(models.values_list("slug", flat=True)) or "none"
        raise ApiError(
            404,
            f"The model '{name}' does not exist on this instance. Models: {offered}.",
            param=param,
            code="model_not_found",
        )
    return found


def nearest_ratio(model: ModelSpec, width: int, height: int) -> str:
    wanted = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log(w / h) - wanted)

    return min(model.aspect_ratios, key=distance)


def openai_shape(model: ModelSpec, size: str | None, quality: str | None) -> Shape:
    size = (size or "auto").strip().lower()
    quality = (quality or "auto").strip().lower()
    if quality not in QUALITIES:
        raise ApiError(
            400,
            f"quality must be one of {', '.join(sorted(QUALITIES))}.",
            param="quality",
            code="invalid_value",
        )
    if size == "auto":
        ratio, longest = ("1:1" if "1:1" in model.aspect_ratios else model.aspect_ratios[0]), 1024
    else:
        match = SIZE_RE.match(size)
        if not match:
            raise ApiError(
                400,
                f"size must be 'auto' or WIDTHxHEIGHT such as 1024x1024 or "
                f"1536x1024; got '{size}'.",
                param="size",
                code="invalid_value",
            )
        width, height = int(match.group(1)), int(match.group(2))
        if not (64 <= width <= MAX_SIDE and 64 <= height <= MAX_SIDE):
            raise ApiError(
                400,
                f"size sides must be between 64 and {MAX_SIDE} pixels.",
                param="size",
                code="invalid_value",
            )
        ratio, longest = nearest_ratio(model, width, height), max(width, height)
    if not model.sizes:
        if longest > 1536:
            raise ApiError(
                400,
                f"{model.name} makes images of about 1024×1024 pixels; "
                f"{size} is larger. Use a model with 2K/4K sizes.",
                param="size",
                code="unsupported_value",
            )
        if quality in HIGH:
            raise ApiError(
                400,
                f"{model.name} has one fixed quality; quality '{quality}' "
                "needs a model with 2K/4K sizes.",
                param="quality",
                code="unsupported_value",
            )
        return Shape(ratio, None)
    wanted = "4K" if longest > 3072 else "2K" if longest > 1536 or quality in HIGH else "1K"
    if wanted not in model.sizes:
        raise ApiError(
            400,
            f"{model.name} makes {', '.join(model.sizes)} images, not {wanted}.",
            param="size",
            code="unsupported_value",
        )
    return Shape(ratio, wanted)


def direct_shape(model: ModelSpec, aspect_ratio: str | None, image_size: str | None) -> Shape:
    """``aspect_ratio``/``image_size`` given as nanoweb (and Gemini) name them."""
    ratio = aspect_ratio or ("1:1" if "1:1" in model.aspect_ratios else model.aspect_ratios[0])
    size = (image_size or "").upper() or model.default_size()
    return Shape(ratio, size)


def image_from_base64(
    data: str, *, field: str, name: str, param: str, code: str | None = None
) -> images.CleanImage:
    """A reference image sent as base64 text, checked like an upload; a 400 naming
    ``param`` when it is not base64 or not an acceptable image."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, f"{field} is not valid base64.", param=param, code=code) from exc
    try:
        return images.clean_image(raw, name=name)
    except images.ImageRejected as exc:
        raise ApiError(400, exc.message, param=param, code=code) from exc
