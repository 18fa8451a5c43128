"""Protocol-neutral helpers every provider shares: image sanity checks, error
envelopes, transport failures and keeping the key out of every message."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone
from PIL import Image

from generations.failures import ErrorKind
from generations.providers.base import ProviderError, Usage

UPSTREAM_MESSAGE_CHARS = 300  # how much of an upstream's own message is kept

IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/webp": (b"RIFF",),  # plus "WEBP" at offset 8, checked below
    "image/gif": (b"GIF87a", b"GIF89a"),
}


def image_problem(data: bytes, mime_type: str) -> str:
    """Why ``data`` is not a whole image of ``mime_type`` ("" when it is)."""
    signatures = IMAGE_SIGNATURES.get(mime_type)
    if signatures is None:
        return f"unsupported image type {mime_type}"
    if not data:
        return "empty image data"
    if not data.startswith(signatures) or (mime_type == "image/webp" and data[8:12] != b"WEBP"):
        return f"bytes are not a {mime_type} image (starts with {data[:8]!r})"
    try:
        # The signature already pinned the format; verify() walks the chunks (PNG CRCs)
        # but reads no pixels, and for JPEG checks nothing: only a decode finds a cut-off
        # file. verify() leaves the image unusable, hence the second open.
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > settings.NANOWEB_MAX_IMAGE_PIXELS:
                return f"{mime_type} image of {im.width}×{im.height} pixels is too large to decode"
            im.load()
    except Exception as exc:  # Pillow raises many types for damaged files
        return f"damaged {mime_type} image: {type(exc).__name__}: {exc}"
    return ""


def corrupt(detail: str, http_status: int | None, usage: Usage | None = None) -> ProviderError:
    return ProviderError(
        ErrorKind.CORRUPT,
        "The provider sent back a damaged response.",
        detail=detail,
        http_status=http_status,
        may_have_been_billed=True,
        usage=usage,
    )


def json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = response.headers.get("content-type", "no content-type")
        raise corrupt(
            f"unreadable body ({kind}, {len(response.content)} bytes): {exc}",
            response.status_code,
        ) from None


# --- anything but a 2xx -----------------------------------------------------


def transient_message(status: int) -> str:
    if status == 503:
        return "The provider is overloaded right now."
    if status == 500:
        return "The provider had an internal error."
    return "The provider is unavailable right now."


def retry_after_header(headers: Mapping[str, str] | None) -> float | None:
    """Relays put the delay in ``Retry-After`` instead (seconds or an HTTP date)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - timezone.now()).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


# --- the wire itself --------------------------------------------------------


def transport_error(exc: Exception) -> ProviderError:
    """Classify an httpx failure by how far the request got before it broke."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderError(
            ErrorKind.SLOW,
            "The provider took too long to answer.",
            detail=detail,
            may_have_been_billed=True,
        )
    if isinstance(exc, httpx.DecodingError):
        return corrupt(detail, None)
    unreached = (
        httpx.ConnectError,
        httpx.ConnectTimeout,
        httpx.PoolTimeout,
        httpx.ProxyError,
        httpx.UnsupportedProtocol,
        httpx.InvalidURL,
    )
    if isinstance(exc, unreached):
        return ProviderError(
            ErrorKind.TRANSIENT, "The provider could not be reached.", detail=detail
        )
    # Write timeouts, dropped connections, protocol errors: the prompt may have
    # reached Google, which may bill it.
    return ProviderError(
        ErrorKind.TRANSIENT,
        "The connection to the provider broke off.",
        detail=detail,
        may_have_been_billed=True,
    )


def scrubbed(err: ProviderError, secret: str) -> ProviderError:
    if not secret or (secret not in err.message and secret not in err.detail):
        return err
    return ProviderError(
        err.kind,
        err.message.replace(secret, "[key]"),
        detail=err.detail.replace(secret, "[key]"),
        http_status=err.http_status,
        retry_after=err.retry_after,
        may_have_been_billed=err.may_have_been_billed,
        usage=err.usage,
    )


# --- small helpers ----------------------------------------------------------


def as_int(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


def clean_text(text: str) -> str:
    return excerpt(" ".join(text.split()), UPSTREAM_MESSAGE_CHARS)


def excerpt(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def text_of(body: bytes | str) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body or ""
