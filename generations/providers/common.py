"""Protocol-neutral helpers every provider shares: image sanity checks, error
envelopes, transport failures, keeping the key out of every message, relays' "pool
saturated" answers, and images behind URLs (the same-origin rule: an image URL on the
admin-configured base URL's origin is fetched with the provider's client, any other one
through :mod:`safe_fetch`)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from PIL import Image

from generations.failures import ErrorKind
from generations.providers.base import GeneratedImage, ProviderError, Usage
from generations.providers.safe_fetch import FetchError, fetch_image

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
        _("The provider sent back a damaged response."),
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
        return _("The provider is overloaded right now.")
    if status == 500:
        return _("The provider had an internal error.")
    return _("The provider is unavailable right now.")


def loads_or_none(body: bytes | str) -> Any:
    """The JSON in ``body``, or None when it is not JSON (an HTML error page, nothing)."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, TypeError):
        return None


def server_side(
    status: int, error_of, *, slow: str = "", may_have_been_billed: bool = False
) -> ProviderError | None:
    """The end every provider's status mapping shares: 504 is slow (retried with a longer
    read timeout), 408, 409 and any other 5xx transient; None for the other statuses.
    ``error_of(kind, message, **extra)`` is the provider's own builder (its detail)."""
    if status == 504:
        extra = {"may_have_been_billed": True} if may_have_been_billed else {}
        return error_of(ErrorKind.SLOW, slow or _("The provider took too long to answer."), **extra)
    if status in (408, 409) or status >= 500:
        return error_of(ErrorKind.TRANSIENT, transient_message(status))
    return None


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


# One API / New API (and their forks) rewrite any 429 they get back from their upstream
# channels, after retrying the group's other channels, into "当前分组上游负载已饱和，请稍后再试
# (request id: …)" ("the group's upstream load is saturated, try again later"):
# songquanpeng/one-api controller/relay.go (`if bizErr.StatusCode == 429 { … }`, README FAQ 6
# "上游渠道 429 了"), QuantumNous/new-api's task relay (respondTaskError) and older text relay
# (issue #991: "429 当前分组上游负载已饱和，请稍后再试", type new_api_error), One Hub's
# FilterOpenAIErr. Their Midjourney path says "当前分组负载已饱和，请稍后再试，或升级账户以提升
# 服务质量。", other relays "当前模型 x 上游已饱和" or "当前上游负载已饱和". They pass it on in
# every style they serve (OpenAI, Gemini-native, tasks), usually as 429, sometimes as 200/500.
# It is the relay's pool that is full, not this key's rate: fail over (transient), do not
# back this key off as rate limited.
RELAY_SATURATED = re.compile(r"(?:负载|上游)已饱和")
SATURATED_MESSAGE = gettext_lazy("The relay's upstream capacity is saturated right now.")


def relay_saturated(*texts: str) -> bool:
    return any(RELAY_SATURATED.search(text or "") for text in texts)


# --- the wire itself --------------------------------------------------------


def transport_error(exc: Exception) -> ProviderError:
    """Classify an httpx failure by how far the request got before it broke."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderError(
            ErrorKind.SLOW,
            _("The provider took too long to answer."),
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
            ErrorKind.TRANSIENT, _("The provider could not be reached."), detail=detail
        )
    # Write timeouts, dropped connections, protocol errors: the prompt may have
    # reached Google, which may bill it.
    return ProviderError(
        ErrorKind.TRANSIENT,
        _("The connection to the provider broke off."),
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


# --- images behind URLs and data URIs -----------------------------------------

MAX_FETCHED_IMAGE_BYTES = 50 * 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
DATA_URI = re.compile(r"data:(image/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,", re.IGNORECASE)


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``url``, the port made explicit; None when unparsable."""
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def same_origin(url: str, base_url: str) -> bool:
    """``url`` is on the origin (scheme, host and port) of the admin-configured ``base_url``."""
    mine = origin_of(base_url)
    return mine is not None and origin_of(url) == mine


def host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def data_uri(data: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(data).decode('ascii')}"


def decode_data_uri(uri: str) -> bytes:
    """The bytes of a base64 ``data:`` URI (ValueError when it is not one)."""
    match = DATA_URI.match(uri.strip())
    if not match:
        raise ValueError("not a base64 data: URI")
    try:
        return base64.b64decode("".join(uri.strip()[match.end() :].split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 image data: {exc}") from None


def sniffed_image(data: bytes, usage: Usage | None, http_status: int | None) -> GeneratedImage:
    """A whole image of whatever type its bytes say (declared types are not trusted)."""
    mime = next((m for m, signs in IMAGE_SIGNATURES.items() if data.startswith(signs)), "")
    problem = image_problem(data, mime) if mime else "bytes are not a PNG, JPEG, WebP or GIF image"
    if problem:
        raise corrupt(f"{problem} ({len(data)} bytes)", http_status, usage)
    return GeneratedImage(data=data, mime_type=mime)


def images_at(
    urls: list[str],
    fetch: Callable[[str], bytes],
    usage: Usage | None,
    http_status: int | None,
    *,
    none_detail: str,
) -> tuple[GeneratedImage, ...]:
    """The images a finished upstream request points to, downloaded and sniffed; a
    request that finished without any is NO_IMAGE (possibly billed)."""
    if not urls:
        raise ProviderError(
            ErrorKind.NO_IMAGE,
            _("The model did not produce an image. Rephrasing the prompt may help."),
            detail=none_detail,
            http_status=http_status,
            may_have_been_billed=True,
            usage=usage,
        )
    return tuple(
        sniffed_image(fetched(url, fetch, usage, http_status), usage, http_status) for url in urls
    )


def fetched(
    url: str, fetch: Callable[[str], bytes], usage: Usage | None, http_status: int | None
) -> bytes:
    """``fetch(url)``, its failures classified: refused by our rules → corrupt, otherwise
    transient. The image was made (and billed) by then. A signed URL works as a credential
    for the image, so only its host goes into the detail."""
    try:
        return fetch(url)
    except FetchError as exc:
        host = host_of(url)
        if exc.refused:
            raise corrupt(
                f"image URL on {host} refused: {exc.detail}", http_status, usage
            ) from None
        raise ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider's image could not be downloaded."),
            detail=f"image URL on {host}: {exc.detail}",
            http_status=http_status,
            may_have_been_billed=True,
            usage=usage,
        ) from None


def origin_fetcher(
    base_url: str,
    client: httpx.Client,
    headers: Mapping[str, str],
    *,
    timeout: float,
    max_bytes: int = MAX_FETCHED_IMAGE_BYTES,
) -> Callable[[str], bytes]:
    """A fetch for an upstream's image URLs. A URL on ``base_url``'s own origin was chosen by
    the admin (the provider itself, or the offline sandbox on 127.0.0.1): it is fetched with
    the provider's client and ``headers``. Any other URL is a third party's and goes through
    :func:`safe_fetch.fetch_image` (https only, public addresses only, pinned, size-capped)."""

    def fetch(url: str) -> bytes:
        if same_origin(url, base_url):
            return _fetch_own(client, url, headers, timeout=timeout, max_bytes=max_bytes)
        return fetch_image(url, max_bytes=max_bytes, timeout=timeout)

    return fetch


def _fetch_own(
    client: httpx.Client, url: str, headers: Mapping[str, str], *, timeout: float, max_bytes: int
) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        with client.stream(
            "GET", url, headers={**headers, "accept": "image/*"}, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code} from {host_of(url)}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise FetchError(f"refused: image larger than {max_bytes} bytes", refused=True)
                if time.monotonic() > deadline:
                    raise FetchError("fetching the image took too long")
            return bytes(body)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise FetchError(f"fetching from {host_of(url)} failed: {type(exc).__name__}") from None


# --- servers a team runs itself (ComfyUI, Hugging Face Spaces) -------------------------

NO_KEY = frozenset({"", "none", "anonymous", "-"})


# The long side of a square image for each size step (a ratio keeps the area), and the
# multiple both sides are rounded to (latent models work in 8 px cells; 64 suits SD/SDXL/
# Flux). Data an admin may override in options ("sides", "multiple").
DEFAULT_SIDES = {"512": 512, "1K": 1024, "2K": 2048, "4K": 4096}
DEFAULT_MULTIPLE = 64


def auth_headers(key: str) -> dict[str, str]:
    """``Authorization: Bearer`` for a real key; nothing for a placeholder (``none``)."""
    return {} if key.strip().lower() in NO_KEY else {"authorization": f"Bearer {key.strip()}"}


def real_key(key: str) -> str:
    """The key to scrub from messages ("" for a placeholder, which is no secret)."""
    return "" if key.strip().lower() in NO_KEY else key.strip()


def pixel_size(
    aspect_ratio: str,
    image_size: str | None,
    sides: dict | None = None,
    multiple: int = DEFAULT_MULTIPLE,
) -> tuple[int, int]:
    """Width and height for a ratio at a size step: the square side's area, at the ratio,
    both sides rounded to ``multiple`` (1:1 1K → 1024×1024, 16:9 1K → 1344×768)."""
    table = {**DEFAULT_SIDES, **(sides or {})}
    side = table.get(image_size or "1K", table["1K"])
    try:
        rw, rh = (float(part) for part in aspect_ratio.split(":"))
        width = math.sqrt(side * side * rw / rh)
    except (ValueError, ZeroDivisionError):
        raise ProviderError(
            ErrorKind.PERMANENT,
            _("Unsupported aspect ratio %(ratio)s.") % {"ratio": aspect_ratio},
        ) from None
    height = side * side / width
    step = max(int(multiple), 8)
    return (max(step, round(width / step) * step), max(step, round(height / step) * step))


def misconfigured(message: str) -> ProviderError:
    """A route whose options cannot work: fail over, never retry it, tell the admin."""
    return ProviderError(ErrorKind.REFUSED, message, detail=f"provider options: {message}")
