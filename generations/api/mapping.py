"""From what API clients send to what a model can do, refusing instead of downgrading.

OpenAI ``size`` (``WIDTHxHEIGHT`` or ``auto``) picks the model's aspect ratio closest
to WIDTH:HEIGHT; a size more than 5 % from every ratio the model makes (``64x1536``)
is refused rather than bent into the nearest one. The longer side and ``quality``
pick the image size:

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

from accounts import limits
from generations import images
from generations.api.errors import ApiError
from generations.models import ModelSpec

SIZE_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")
QUALITIES = {"auto", "low", "medium", "high", "standard", "hd"}
HIGH = {"high", "hd"}
MAX_SIDE = 4096
# How far (as a factor) WIDTH:HEIGHT may be from the ratio it is made at: 1792x1024
# (1.75) is 16:9 (1.78), 1.6 % off; 64x1536 is no ratio any model makes.
RATIO_TOLERANCE = 1.05


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
    found = lookup(name)
    if found is None:
        offered = ", ".join(models.values_list("slug", flat=True)) or "none"
        raise ApiError(
            404,
            f"The model '{name}' does not exist on this instance. Models: {offered}.",
            param=param,
            code="model_not_found",
        )
    return found


def lookup(name: str) -> ModelSpec | None:
    """An available model by slug, by a usable route's upstream id or by alias."""
    models = ModelSpec.objects.available()
    name = name.removeprefix("models/")
    if not name:
        return None
    return models.filter(slug=name).first() or _by_upstream_name(models, name)


def models_for(user) -> list[ModelSpec]:
    """The available models ``user``'s limits let them use, in catalogue order."""
    mine = limits.for_user(user)
    return [m for m in ModelSpec.objects.available() if mine.allows_model(m)]


def model_for(user, name: str) -> ModelSpec:
    """One model ``user`` may use (by slug, upstream id or alias), or a 404: a model their
    limits leave out is answered as one that does not exist."""
    name = (name or "").removeprefix("models/")
    found = lookup(name)
    yours = models_for(user)
    if found is None or found not in yours:
        offered = ", ".join(m.slug for m in yours) or "none"
        raise ApiError(
            404,
            f"There is no model '{name}' you can use on this instance. Your models: {offered}.",
            code="model_not_found",
        )
    return found


def _by_upstream_name(models, name: str) -> ModelSpec | None:
    """The model a Gemini name stands for: one whose usable route calls that upstream id,
    or that lists it among its aliases (a shut-down preview id); a real model before the
    sandbox."""
    routed = list(models.filter(routes__upstream_model=name, routes__enabled=True))
    aliased = [m for m in models if name in (m.aliases or [])]
    found = routed + [m for m in aliased if m not in routed]
    return min(found, key=lambda m: (m.is_sandbox, m.sort_order), default=None)


def _log_ratio(ratio: str) -> float:
    w, h = (int(x) for x in ratio.split(":"))
    return math.log(w / h)


def nearest_ratio(model: ModelSpec, width: int, height: int) -> str:
    """The model's aspect ratio closest to WIDTH:HEIGHT (on a log scale, so 2:1 and 1:2
    are as far from 1:1), or a 400 naming ``size`` when even that one is more than
    5 % away."""
    wanted = math.log(width / height)
    ratio = min(model.aspect_ratios, key=lambda r: abs(_log_ratio(r) - wanted))
    if abs(_log_ratio(ratio) - wanted) > math.log(RATIO_TOLERANCE):
        raise ApiError(
            400,
            f"{model.name} makes no image shaped like {width}x{height} (aspect ratio "
            f"{width / height:.3g}): the closest it makes is {ratio}, more than 5 % away. "
            f"Its aspect ratios are {', '.join(model.aspect_ratios)}; choose a size near "
            "one of them, or send aspect_ratio.",
            param="size",
            code="unsupported_value",
        )
    return ratio


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
