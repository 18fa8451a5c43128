"""Pillow: validate, re-encode (stripping metadata) and thumbnail images.

One entry point, ``clean_image``, for both uploads and upstream output: byte cap
before decoding, format allowlist, pixel cap read from the header before
decoding (decompression bombs never decode), full decode to catch truncation,
then a re-encode that keeps pixels and drops every metadata chunk.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError

# Module-level and thread-safe: Pillow's bomb warning is an error everywhere.
warnings.simplefilter("error", Image.DecompressionBombWarning)

FORMATS = {"PNG": ("image/png", "png"), "JPEG": ("image/jpeg", "jpg"),
           "WEBP": ("image/webp", "webp")}


class ImageRejected(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return next(ext for mime, ext in FORMATS.values() if mime == self.mime_type)


def clean_image(data: bytes, *, name: str = "image", max_bytes: int | None = None,
                max_pixels: int | None = None) -> CleanImage:
    max_bytes = max_bytes or settings.NANOWEB_MAX_UPLOAD_BYTES
    max_pixels = max_pixels or settings.NANOWEB_MAX_IMAGE_PIXELS
    if len(data) > max_bytes:
        raise ImageRejected(f"{name} is {len(data) / 1024 / 1024:.1f} MB; the limit is "
                            f"{max_bytes / 1024 / 1024:.0f} MB.")
    if not data:
        raise ImageRejected(f"{name} is empty.")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = im.format
            if fmt not in FORMATS:
                raise ImageRejected(f"{name} is a {fmt or 'file of unknown type'}; only PNG, "
                                    "JPEG and WebP images are accepted.")
            w, h = im.size
            if w * h > max_pixels:
                raise ImageRejected(f"{name} is {w}×{h} pixels; the limit is "
                                    f"{max_pixels / 1_000_000:.0f} megapixels.")
            im.load()
            out = ImageOps.exif_transpose(im)
            return _encode(out, fmt)
    except ImageRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        raise ImageRejected(f"{name} is not a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected(f"{name} is damaged or incomplete and could not be read.") from None


def _encode(im: Image.Image, fmt: str) -> CleanImage:
    buf = io.BytesIO()
    if fmt == "JPEG":
        im.convert("RGB").save(buf, "JPEG", quality=92)
    else:
        has_alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        clean = im.convert("RGBA" if has_alpha else "RGB")
        if fmt == "PNG":
            clean.save(buf, "PNG")
        else:
            clean.save(buf, "WEBP", lossless=has_alpha, quality=90)
    data = buf.getvalue()
    mime = FORMATS[fmt][0]
    return CleanImage(data, mime, im.width, im.height, hashlib.sha256(data).hexdigest())


def make_thumbnail(data: bytes, max_side: int | None = None) -> bytes:
    max_side = max_side or settings.NANOWEB_THUMBNAIL_SIZE
    with Image.open(io.BytesIO(data)) as im:
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB").save(buf, "WEBP", quality=80)
        return buf.getvalue()
