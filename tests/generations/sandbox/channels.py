"""Helpers for the channel protocols' tests (fal, Replicate, chat): a webhook receiver,
a wait loop, and a few request shorthands."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from PIL import Image

from tests.generations.sandbox.client import http

FAL_KEY = "fal-key-0123456789"
REPLICATE_KEY = "r8_sandbox0123456789"
FAST = (0.05, 0.05)  # queue_latency for tests that only need jobs to finish


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, step: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)


def png_bytes(size=(64, 48), color=(30, 120, 220)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "PNG")
    return out.getvalue()


def png_data_uri(size=(64, 48)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(size)).decode()


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def queue_counters(url: str) -> dict:
    """/healthz's queue counters (zeros before any channel request)."""
    empty = {"submitted": 0, "submitted_by_prompt": {}, "cancelled": 0}
    empty.update(webhooks_sent=0, webhooks_lost=0, webhooks_failed=0, polls=0)
    return http.get(f"{url}/healthz", timeout=5).json().get("queue", empty)


class Receiver:
    """An HTTP server on loopback that records the POSTs it gets.

    ``fail_first`` deliveries are answered 500 (and recorded as failed attempts)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    failing = receiver.attempts <= receiver.fail_first
                    if not failing:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.deliveries.append((headers, body))
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[tuple[dict[str, str], bytes]]:
        def enough():
            with self._lock:
                return list(self.deliveries) if len(self.deliveries) >= count else None

        return wait_until(enough, timeout)


def fal_submit(
    url: str,
    endpoint: str = "fal-ai/nano-banana",
    *,
    key: str | None = FAL_KEY,
    webhook: str | None = None,
    **body,
) -> httpx.Response:
    body.setdefault("prompt", "a lighthouse at dusk")
    headers = {"Authorization": f"Key {key}"} if key else {}
    params = {"fal_webhook": webhook} if webhook else None
    return http.post(f"{url}/fal/{endpoint}", json=body, headers=headers, params=params, timeout=10)


def fal_get(url: str, *, key: str = FAL_KEY, **params) -> httpx.Response:
    return http.get(url, headers={"Authorization": f"Key {key}"}, params=params, timeout=10)


def fal_done(status_url: str, key: str = FAL_KEY) -> dict:
    """Poll a fal status URL until COMPLETED; its body."""

    def completed():
        response = fal_get(status_url, key=key)
        return response.json() if response.status_code == 200 else None

    return wait_until(completed)
