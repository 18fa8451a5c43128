"""Pillow: validate, re-encode (stripping metadata) and thumbnail images.

One entry point, ``clean_image``, for both uploads and upstream output: byte cap
before decoding, format allowlist, pixel cap read from the header before
decoding (decompression bombs never decode), full decode to catch truncation,
then a re-encode that keeps pixels and drops every metadata chunk. An upright
8-bit RGB(A) PNG or RGB JPEG, what models send, is not re-encoded (compressing a
noisy 1K PNG again takes ~0.4 s; a JPEG would lose quality each time): its chunks
or segments are copied except the metadata ones, which keeps the pixels exactly
and drops anything after the end of the image.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass, replace

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


# PNG chunks that carry pixels or how to show them; everything else (text, EXIF,
# ICC profiles, time stamps, private chunks) is metadata and is dropped.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_PIXEL_CHUNKS = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT"}
)


# JPEG segments that carry pixels or how to decode them: JFIF (APP0), Adobe's colour
# transform (APP14), quantisation and Huffman tables, frame headers, restart interval
# and the scans. EXIF, XMP, ICC, comments and every other APPn are dropped.
JPEG_IMAGE_MARKERS = frozenset(
    {0xE0, 0xEE, 0xDB, 0xC4, 0xCC, 0xDD, 0xDA, 0xDC}
    | {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}
)


_MARKER_AFTER_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class ImageRejected(ValueError):
    """Why an image is refused, in words for the person who sent it. ``too_large``: over
    the byte cap (an HTTP API answers 413 for it, 400 for anything else)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    mime_type: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes | None = None  # WebP, when asked for (made from the same decode)

    @property
    def extension(self) -> str:
        return next(ext for mime, ext in FORMATS.values() if mime == self.mime_type)


def clean_image(
    data: bytes,
    *,
    name: str = "image",
    max_bytes: int | None = None,
    max_pixels: int | None = None,
    thumbnail: bool = False,
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
            kept = _jpeg_as_sent(data, im)
            if kept:  # only the thumbnail needs pixels: a reduced decode of the whole stream
                im.draft("RGB", _thumbnail_size(w, h) if thumbnail else (1, 1))
            im.load()
            upright = im if kept else _upright(im)
            if not kept and upright is im:
                kept = _without_metadata(data, fmt, im)
            if kept:
                clean = CleanImage(kept, FORMATS[fmt][0], w, h, hashlib.sha256(kept).hexdigest())
                thumb = _thumbnail_of(im) if thumbnail else None
            else:
                clean = _encode(upright, fmt)
                thumb = make_thumbnail(clean.data) if thumbnail else None
            return replace(clean, thumbnail=thumb)
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


def clean_mask(data: bytes, *, name: str = "The mask") -> CleanImage:
    """An edit mask: a PNG whose fully transparent pixels mark where the image may change."""
    clean = clean_image(data, name=name)
    if clean.mime_type != "image/png":
        raise ImageRejected(f"{name} must be a PNG with an alpha channel.")
    with Image.open(io.BytesIO(clean.data)) as im:  # the header is enough
        if im.mode != "RGBA":  # what clean_image makes of any PNG with transparency
            raise ImageRejected(
                f"{name} has no alpha channel; its transparent pixels mark where to edit."
            )
    return clean


def _upright(im: Image.Image) -> Image.Image:
    method = UPRIGHT.get(_orientation(im))
    return im.transpose(method) if method is not None else im


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation, read from the header (nothing is decoded)."""
    try:
        return im.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a damaged EXIF block is dropped anyway; the pixels are fine
        return 1


def _jpeg_as_sent(data: bytes, im: Image.Image) -> bytes | None:
    """An upright RGB JPEG's segments minus metadata, decided from the header alone (before
    any decode), so that its pixels can be decoded at a reduced scale: libjpeg's DCT
    scaling still entropy-decodes the whole stream, so damage is caught as before, but a
    4K image takes 1/64 of the memory and a fraction of the time. None: decode fully."""
    if im.format != "JPEG" or im.mode != "RGB" or _orientation(im) in UPRIGHT:
        return None
    return _jpeg_image_segments(data)


def _thumbnail_size(width: int, height: int) -> tuple[int, int]:
    """The size ``_thumbnail_of`` shrinks a ``width`` × ``height`` image to."""
    side = settings.NANOWEB_THUMBNAIL_SIZE
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _without_metadata(data: bytes, fmt: str, im: Image.Image) -> bytes | None:
    """The file as sent minus its metadata, when it is a plain 8-bit RGB(A) PNG or RGB
    JPEG (what models send); None when it must be re-encoded instead."""
    if fmt == "PNG" and im.mode in ("RGB", "RGBA") and "transparency" not in im.info:
        return _png_pixel_chunks(data)
    if fmt == "JPEG" and im.format == "JPEG" and im.mode == "RGB":
        return _jpeg_image_segments(data)
    return None


def _png_pixel_chunks(data: bytes) -> bytes | None:
    """``data`` with only :data:`PNG_PIXEL_CHUNKS`, or None when its chunk list is
    not well-formed (then the image is re-encoded instead)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    out, pos = [PNG_SIGNATURE], len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            return None
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            return None
        if kind in PNG_PIXEL_CHUNKS:
            out.append(data[pos:end])
        if kind == b"IEND":
            return b"".join(out)
        pos = end
    return None


def _jpeg_image_segments(data: bytes) -> bytes | None:
    """``data`` with only :data:`JPEG_IMAGE_MARKERS` segments and the scans up to the
    first end-of-image, or None when its segments are not well-formed."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out, pos, end = [b"\xff\xd8"], 2, len(data)
    # A marker is two bytes: the end-of-image marker may be the file's last two.
    while pos + 2 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image: anything after it is dropped
            out.append(b"\xff\xd9")
            return b"".join(out)
        if pos + 4 > end:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment_end = pos + 2 + length
        if length < 2 or segment_end > end:
            return None
        if marker == 0xDA:  # start of scan: the entropy-coded data runs to the next marker
            segment_end = _end_of_scan(data, segment_end)
            if segment_end is None:
                return None
        if marker in JPEG_IMAGE_MARKERS:
            out.append(data[pos:segment_end])
        pos = segment_end
    return None


def _end_of_scan(data: bytes, pos: int) -> int | None:
    """Where the entropy-coded data starting at ``pos`` ends: the first 0xFF followed by
    neither a stuffed 0x00, a restart marker nor another 0xFF."""
    found = _MARKER_AFTER_SCAN.search(data, pos)
    return found.start() if found else None


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
        raise ImageRejected(f"{name} is {_bytes(size)}; the limit is {limit}.", too_large=True)


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
    with Image.open(io.BytesIO(data)) as im:
        return _thumbnail_of(im, max_side)


def _thumbnail_of(im: Image.Image, max_side: int | None = None) -> bytes:
    """A WebP no longer than ``max_side`` (shrinks ``im`` in place)."""
    max_side = max_side or settings.NANOWEB_THUMBNAIL_SIZE
    # Box-reduce by the whole factor first (a few ms), then resample the rest: ten
    # times faster than resampling all of a 1K image, and as sharp at gallery size.
    im.thumbnail((max_side, max_side), reducing_gap=1.0)
    buf = io.BytesIO()
    im.convert("RGBA" if im.mode in ("RGBA", "LA") else "RGB").save(
        buf,
        "WEBP",
        quality=80,
        method=2,  # as small as the default, three times faster
    )
    return buf.getvalue()
