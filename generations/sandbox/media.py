"""Images in and out of the channel protocols (fal, Replicate, chat relays).

Requests carry reference images as ``data:`` URIs (RFC 2397, base64) or as URLs; the
sandbox is offline, so the only URLs it can "download" are the files it serves itself
(``/files/{name}``). Answers carry the generated images as files on the sandbox's own
origin, or inline as data URIs. Nothing here is any provider's wording: the modules that
use it turn ``BadImage`` into their own error shapes.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from PIL import Image

# Output format names as the protocols spell them → Pillow format, MIME type, extension.
FORMATS = {
    "png": ("PNG", "image/png", "png"),
    "jpeg": ("JPEG", "image/jpeg", "jpg"),
    "jpg": ("JPEG", "image/jpeg", "jpg"),
    "webp": ("WEBP", "image/webp", "webp"),
}
REFERENCE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
_DATA_URI = re.compile(
    r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),(?P<data>.*)$", re.S
)


class BadImage(Exception):
    """A reference that is not an image: ``reason`` is "download" or "load"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Reference:
    data: bytes
    width: int
    height: int


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a ``data:`` URI; BadImage("load") when it does not decode."""
    match = _DATA_URI.match(uri)
    if match is None:
        raise BadImage("load", "not a data URI")
    payload = match["data"]
    if ";base64" in (match["params"] or ""):
        try:
            return base64.b64decode(payload.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadImage("load", "the data URI's base64 does not decode") from None
    return unquote(payload).encode("latin-1", "replace")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_size(data: bytes) -> tuple[int, int]:
    """Pixel size of an encoded image; BadImage("load") for anything Pillow cannot read."""
    try:
        with Image.open(io.BytesIO(data), formats=REFERENCE_FORMATS) as image:
            image.load()
            return image.size
    except Exception:  # Pillow raises many types for non-images
        raise BadImage("load", "the file is not an image") from None


def load_reference(uri: object, files, origin: str) -> Reference:
    """A reference image from a data URI or from one of the sandbox's own files."""
    if not isinstance(uri, str) or not uri:
        raise BadImage("load", "not a URL")
    data = decode_data_uri(uri) if uri.startswith("data:") else _own_file(uri, files, origin)
    width, height = image_size(data)
    return Reference(data, width, height)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _own_file(url: str, files, origin: str) -> bytes:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadImage("load", "not a URL")
    own = urlsplit(origin)
    same_host = parts.hostname == own.hostname or (
        parts.hostname in LOOPBACK and own.hostname in LOOPBACK
    )
    if not (same_host and parts.port == own.port) or not parts.path.startswith("/files/"):
        # The sandbox is offline: it can only read back what it serves itself.
        raise BadImage("download", "the sandbox cannot download files from other hosts")
    found = files.get(parts.path.removeprefix("/files/"))
    if found is None:
        raise BadImage("download", "no such file")
    return found[0]


def closest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    """The aspect ratio of ``ratios`` nearest to width:height (for "auto"/"match_input")."""

    def distance(ratio: str) -> float:
        w, h = (int(n) for n in ratio.split(":"))
        return abs(w / h - width / height)

    return min(ratios, key=distance)


def cut(data: bytes) -> bytes:
    """A file cut short on the way (the truncated fault): the start of it, not an image."""
    return data[: len(data) * 2 // 5]


def cut_json(body: bytes) -> bytes:
    """A JSON answer cut in half (the malformed fault)."""
    return body[: len(body) // 2]
