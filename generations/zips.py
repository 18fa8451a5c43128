"""Zip downloads streamed as they are written: never the whole archive in memory.

The gallery's bulk download and a batch's results both use :func:`stream` for the
archive and :func:`response` to send it.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse

CHUNK_BYTES = 256 * 1024


class _Sink:
    """A write-only file object the zip writer fills and the response drains. It
    cannot seek, so ZipFile writes a streaming archive (data descriptors after each
    file) without ever going back."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.offset = 0

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.offset += len(data)
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data, self.chunks = b"".join(self.chunks), []
        return data


def stream(members: Iterable[tuple[str, object]]) -> Iterator[bytes]:
    """Yield a zip of ``(name, content)`` members as it is written. ``bytes`` content
    (a manifest) is deflated; a stored file is copied as is (PNG, JPEG and WebP are
    compressed already), and one the storage lost is skipped, not fatal."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, content in members:
            if isinstance(content, bytes):
                archive.writestr(name, content, compress_type=zipfile.ZIP_DEFLATED)
            else:
                try:
                    handle = content.open("rb")
                except FileNotFoundError:
                    continue
                with handle, archive.open(name, "w", force_zip64=True) as dest:
                    for chunk in handle.chunks(CHUNK_BYTES):
                        dest.write(chunk)
                        yield sink.drain()
            yield sink.drain()
    yield sink.drain()


def response(request, chunks: Iterator[bytes], filename: str) -> StreamingHttpResponse:
    """A private zip download of ``chunks``."""
    # Under ASGI a plain iterator would be read whole into memory first; hand Django an
    # async one that pulls a chunk at a time from the (database-touching) generator.
    content = _async_chunks(chunks) if isinstance(request, ASGIRequest) else chunks
    result = StreamingHttpResponse(content, content_type="application/zip")
    result["Content-Disposition"] = attachment(filename)
    result["Cache-Control"] = "private, no-store"
    result["X-Content-Type-Options"] = "nosniff"
    return result


def attachment(filename: str) -> str:
    """``Content-Disposition`` for a download whose name may be Chinese: the name itself
    in ``filename*`` (RFC 6266 / 5987, which every current browser reads), and an ASCII
    ``filename`` fallback for older clients, its other characters replaced by ``_``."""
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename
    )
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename)}"


async def _async_chunks(chunks):
    done = object()
    step = sync_to_async(next, thread_sensitive=True)
    while (chunk := await step(chunks, done)) is not done:
        yield chunk
