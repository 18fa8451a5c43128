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
from PIL import ExifTags, Image, UnidentifiedImageError

# Module-level and thread-safe: Pillow's bomb warning is an error everywhere.
warnings.simplefilter("error", Image.DecompressionBombWarning)

FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
# Phone cameras write JPEGs with extra frames (depth, HDR gain maps) that Pillow
# calls MPO; the first frame is the photo.
ALIASES = {"MPO": "JPEG"}

# How to turn each EXIF orientation upright (what ImageOps.exif_transpose does,
# without re-serialising the rest of the EXIF, which breaks on damaged blocks).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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


def clean_image(
    data: bytes, *, name: str = "image", max_bytes: int | None = None, max_pixels: int | None = None
) -> CleanImage:
    max_pixels = max_pixels or settings.NANOWEB_MAX_IMAGE_PIXELS
    refuse_oversize(name, len(data), max_bytes)
    if not data:
        raise ImageRejected(f"{name} is empty.")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = ALIASES.get(im.format, im.format)
            if fmt not in FORMATS:
                raise ImageRejected(
                    f"{name} is a {fmt or 'file of unknown type'}; only PNG, "
                    "JPEG and WebP images are accepted."
                )
            w, h = im.size
            if w * h > max_pixels:
                raise ImageRejected(
                    f"{name} is {w}×{h} pixels; the limit is {_pixels(max_pixels)}."
                )
            im.load()
            return _encode(_upright(im), fmt)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own cap, hit inside Image.open before our check could run.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
        raise ImageRejected(f"{name} has too many pixels; the limit is {_pixels(limit)}.") from None
    except UnidentifiedImageError:
        raise ImageRejected(f"{name} is not a PNG, JPEG or WebP image.") from None
    except (OSError, SyntaxError, ValueError):
        raise ImageRejected(f"{name} is damaged or incomplete and could not be read.") from None


def _upright(im: Image.Image) -> Image.Image:
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block is dropped anyway; the pixels are fine
        orientation = 1
    method = UPRIGHT.get(orientation)
    return im.transpose(method) if method is not None else im


def _encode(im: Image.Image, fmt: str) -> CleanImage:
    has_alpha = fmt != "JPEG" and (im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info)
    clean = im.convert("RGBA" if has_alpha else "RGB")
    clean.info = {}  # savers copy some of it (PNG's ICC profile, JPEG's comment) into the file
    buf = io.BytesIO()
    if fmt == "JPEG":
        clean.save(buf, "JPEG", quality=92)
    elif fmt == "PNG":
        clean.save(buf, "PNG")
    else:
        clean.save(buf, "WEBP", lossless=has_alpha, quality=90)
    data = buf.getvalue()
    mime = FORMATS[fmt][0]
    return CleanImage(data, mime, im.width, im.height, hashlib.sha256(data).hexdigest())


def refuse_oversize(name: str, size: int, max_bytes: int | None = None) -> None:
    """Raise :class:`ImageRejected` for a file over the byte cap (checked before reading)."""
    max_bytes = max_bytes or settings.NANOWEB_MAX_UPLOAD_BYTES
    if size > max_bytes:
        limit = _bytes(max_bytes).replace(".0 ", " ")  # a round limit reads "20 MB"
        raise ImageRejected(f"{name} is {_bytes(size)}; the limit is {limit}.")


def _bytes(n: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _pixels(n: int) -> str:
    if n < 1_000_000:
        return f"{n:,} pixels"
    return f"{n / 1_000_000:.1f}".removesuffix(".0") + " megapixels"


def make_thumbnail(data: bytes, max_side: int | None = None) -> bytes:
    max_side = max_side or settings.NANOWEB_THUMBNAIL_SIZE
    with Image.open(io.BytesIO(data)) as im:
        im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB").save(buf, "WEBP", quality=80)
        return buf.getvalue()
