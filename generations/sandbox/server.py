"""The sandbox upstream: a real HTTP server that speaks Gemini's ``generateContent``,
OpenAI's Images API, fal.ai's queue, Replicate's predictions and an OpenAI-compatible
chat relay.

It is a test double of these APIs for tests, benchmarks, demos and the offline
default. It renders real images (``render``), answers in the exact wire shapes
(``responses``, ``openai_images``, ``fal``, ``replicate``, ``chat``), enforces a per-key
RPM and daily quota, and injects faults:

* at random, by class, with ``SandboxConfig.rates`` (shares of all requests);
* deterministically, when the prompt contains ``[sandbox:CLASS]`` (always that
  class) or ``[sandbox:CLASSxN]`` (the first N requests with that exact prompt,
  then success), e.g. ``[sandbox:503x2]``. Classes are listed in ``TRIGGERS``;
  each protocol answers a class in its own form (see its module).

Routes (this module only routes; the answers are made by the modules named):

* ``direct``: ``POST /v1beta/models/{model}:generateContent``, ``GET /v1beta/models``
  (models.list, ``pageSize`` and ``pageToken``) and ``GET /v1beta/models/{model}``
  (models.get), key in ``x-goog-api-key`` or ``?key=``; ``POST /v1/images/generations``
  and ``POST /v1/images/edits`` (key as ``Authorization: Bearer``), where the same
  faults take OpenAI's forms (a daily quota is ``insufficient_quota``, blocks are
  ``moderation_blocked``, NO_IMAGE and text-only answers an empty ``data``);
* ``fal``: everything under ``/fal`` (fal's queue, ``{sandbox}/fal`` as base URL);
* ``replicate``: everything under ``/replicate/v1``;
* ``chat``: ``POST /v1/chat/completions``;
* ``batch_api``: Gemini's Batch API (``POST /v1beta/models/{model}:batchGenerateContent``,
  ``/v1beta/batches…``) and the Files API it reads input from and writes results to
  (``/upload/v1beta/files``, ``/download/v1beta/files/{id}:download``);
* ``GET /files/{name}``: the files the queue protocols and the chat relay made
  (``queue.FileStore``);
* ``GET /healthz``: status, the request count and, once a channel protocol (fal,
  Replicate, chat) has been called, ``queue``: ``submitted``, ``submitted_by_prompt``,
  ``cancelled``, ``webhooks_sent``, ``webhooks_lost``, ``webhooks_failed``, ``polls``;
  once a Batch API job was created, ``batch`` (``batch_api.BatchAPI.counters``).

Anything else is a 404 in the envelope of the API its path belongs to.

Models are those of ``specs`` (Google's December 2026 lineup, sources there). An id
it does not serve (unknown, shut down such as ``gemini-3-pro-image-preview``, not a
generateContent model, or hidden from the key by ``SandboxConfig.hidden_models``) is
answered on generateContent and models.get with Google's 404 NOT_FOUND, and left out
of models.list for that key. models.list pages for real; its default page size is
``MODELS_PAGE_SIZE`` (Google's is 50: the sandbox's is small so that a client sees
more than one page). The key is checked before the model, and a 404 is not counted
against the key's quotas.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from generations.sandbox import openai_images as openai
from generations.sandbox import responses
from generations.sandbox.batch_api import BatchAPI
from generations.sandbox.chat import ChatRelay
from generations.sandbox.comfyui import ComfyUIAPI
from generations.sandbox.direct import MODELS_PAGE_SIZE, DirectAPIs
from generations.sandbox.fal import FalAPI
from generations.sandbox.freepik import FreepikAPI
from generations.sandbox.hf_space import SpaceAPI
from generations.sandbox.higgsfield import HiggsfieldAPI
from generations.sandbox.leonardo import LeonardoAPI
from generations.sandbox.queue import QueueEngine
from generations.sandbox.replicate import ReplicateAPI
from generations.sandbox.stability import StabilityAPI
from generations.sandbox.state import Reply, Request, SandboxConfig, SandboxState

__all__ = ["MODELS_PAGE_SIZE", "SandboxConfig", "SandboxServer", "make_server", "running_sandbox"]

log = logging.getLogger(__name__)

GENERATE_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")
MODELS_PATH = "/v1beta/models"
MODEL_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+)$")
OPENAI_PATHS = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}
CHAT_PATH = "/v1/chat/completions"
MAX_BODY_BYTES = 20 * 1024 * 1024  # Gemini's limit for a request with inline data
# fal and Replicate take references as data URIs in JSON: up to 14 of them.
MAX_CHANNEL_BODY_BYTES = 100 * 1024 * 1024
# Path prefix → (protocol, the prefix the protocol's own paths start after).
CHANNELS = {"/fal/": ("fal", "/fal"), "/replicate/v1/": ("replicate", "/replicate/v1")}
# The other channels' protocols: each class takes (config, state, queue engine, stopping
# event) and answers ``handle(Request)``; a provider's base_url is ``{sandbox}{prefix}``.
MORE_CHANNELS = {
    "/leonardo/": ("leonardo", "/leonardo", LeonardoAPI),
    "/freepik/": ("freepik", "/freepik", FreepikAPI),
    "/higgsfield/": ("higgsfield", "/higgsfield", HiggsfieldAPI),
    "/hf/": ("hf_space", "/hf", SpaceAPI),
    "/stability/": ("stability", "/stability", StabilityAPI),
    "/comfyui/": ("comfyui", "/comfyui", ComfyUIAPI),
}
CHANNELS.update({prefix: (name, strip) for prefix, (name, strip, _) in MORE_CHANNELS.items()})


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once; the default is 5

    def __init__(self, config: SandboxConfig, address: tuple[str, int]) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.stopping = threading.Event()  # wakes requests that are sleeping or hanging
        self.direct = DirectAPIs(config, self.state, self.stopping)
        self.queue = QueueEngine(config, self.state, self.stopping)
        self.fal = FalAPI(config, self.state, self.queue)
        self.replicate = ReplicateAPI(config, self.state, self.queue, self.stopping)
        self.chat = ChatRelay(config, self.state, self.queue, self.stopping)
        self.batch = BatchAPI(self.direct, self.state, self.stopping)
        self.channels = {"fal": self.fal, "replicate": self.replicate}
        for name, _, api in MORE_CHANNELS.values():
            self.channels[name] = api(config, self.state, self.queue, self.stopping)
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def health(self) -> dict:
        health = {"status": "ok", "upstream": "sandbox", "requests": self.state.requests}
        if self.queue.counters.touched():
            health["queue"] = self.queue.counters.snapshot()
        if self.batch.counts:
            health["batch"] = self.batch.counters()
        return health

    def serve_file(self, name: str) -> Reply:
        found = self.queue.files.get(name)
        if found is None:
            return Reply.of(404, {"detail": "Not found"}, "not_found")
        data, content_type = found
        return Reply(200, data, "file", content_type=content_type)

    def stop(self) -> None:
        self.stopping.set()
        self.queue.webhooks.stop()
        self.shutdown()
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        log.debug("sandbox: connection from %s ended abruptly", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, a kept-alive client
    # would wait ~40 ms for a delayed ACK on every response.
    disable_nagle_algorithm = True
    server: SandboxServer

    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _handle(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        channel = next((c for prefix, c in CHANNELS.items() if url.path.startswith(prefix)), None)
        is_chat = url.path == CHAT_PATH
        is_batch = BatchAPI.owns(url.path)
        uploading = url.path.startswith("/upload/")  # Google takes files up to 2 GB
        big = channel or is_chat or uploading
        raw = self._read_body(MAX_CHANNEL_BODY_BYTES if big else MAX_BODY_BYTES)
        model = "-"
        route = GENERATE_PATH.match(url.path)
        is_openai = url.path.startswith("/v1/")
        flavor = "openai" if is_openai else "google"
        if channel or (is_chat and self.command == "POST"):
            flavor = "plain"
            reply = self._channel(channel, url, raw)
        elif is_batch:
            host = self.headers.get("Host") or self.server.base_url.removeprefix("http://")
            reply = self.server.batch.handle(
                self.command, url.path, url.query, self.headers, raw, f"http://{host}"
            )
            if reply.outcome == "file":
                flavor = "plain"
        elif self.command == "GET" and url.path.startswith("/files/"):
            flavor = "plain"
            reply = self.server.serve_file(url.path.removeprefix("/files/"))
        elif self.command == "POST" and route:
            model = unquote(route["model"])
            if raw is None:
                message = f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."
                reply = Reply.of(400, responses.invalid_argument_body(message), "too_large")
            else:
                reply = self.server.direct.answer(model, self._api_key(url.query), raw)
        elif self.command == "POST" and url.path in OPENAI_PATHS:
            if raw is None:
                reply = Reply.of(413, openai.too_large_body(MAX_BODY_BYTES), "too_large")
            else:
                content_type = self.headers.get("Content-Type") or ""
                model, reply = self.server.direct.answer_openai(
                    OPENAI_PATHS[url.path], self._bearer_key(), raw, content_type
                )
        elif self.command == "GET" and url.path == MODELS_PATH:
            reply = self.server.direct.answer_models_list(self._api_key(url.query), url.query)
        elif self.command == "GET" and (listed := MODEL_PATH.match(url.path)):
            model = unquote(listed["model"])
            reply = self.server.direct.answer_model_get(model, self._api_key(url.query))
        elif self.command == "GET" and url.path == "/healthz":
            reply = Reply.of(200, self.server.health())
        elif is_openai:
            reply = Reply.of(404, openai.not_found_body(self.command, url.path), "not_found")
        else:
            reply = Reply.of(404, responses.not_found_body(url.path), "not_found")
        # The line is logged before the answer goes out (after it, for a connection
        # held open): a client that reads the answer finds the request logged already.
        if not reply.hang:
            self._log_line(url.path, model, reply, started)
        self._send(reply, started, flavor)
        if reply.hang:
            self._log_line(url.path, model, reply, started)

    def _log_line(self, path: str, model: str, reply: Reply, started: float) -> None:
        # The path without its query string: ?key= must never reach a log.
        log.log(
            logging.DEBUG if path == "/healthz" else logging.INFO,
            "%s %s model=%s status=%s outcome=%s %.0fms",
            self.command,
            path,
            model,
            reply.status or "-",
            reply.outcome,
            (time.perf_counter() - started) * 1000,
        )

    def _channel(self, channel: tuple[str, str] | None, url, raw: bytes | None) -> Reply:
        """A fal, Replicate or chat relay request, handed to its protocol."""
        protocol, prefix = channel or ("chat", "")
        if raw is None:
            detail = f"Request payload size exceeds the limit: {MAX_CHANNEL_BODY_BYTES} bytes."
            return Reply.of(413, {"detail": detail}, "too_large")
        host = self.headers.get("Host") or self.server.base_url.removeprefix("http://")
        request = Request(
            method=self.command,
            path=url.path.removeprefix(prefix) or "/",
            query=parse_qs(url.query),
            headers=self.headers,
            body=raw,
            origin=f"http://{host}",
        )
        api = self.server.channels.get(protocol)
        if api is None and protocol != "chat":
            return Reply.of(404, {"detail": "Not found"}, "not_found")
        return (api or self.server.chat).handle(request)

    def _read_body(self, limit: int) -> bytes | None:
        """The request body; None when it is more than ``limit`` bytes."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0  # answered as an unreadable JSON payload
        if length > limit:
            self.close_connection = True  # the unread body makes the connection unusable
            return None
        return self.rfile.read(length) if length else b""

    def _api_key(self, query: str) -> str:
        return self.headers.get("x-goog-api-key") or parse_qs(query).get("key", [""])[0]

    def _bearer_key(self) -> str:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _send(self, reply: Reply, started: float, flavor: str = "google") -> None:
        if reply.hang:
            self.server.stopping.wait(self.server.config.hang_seconds)
            self.close_connection = True
            return
        elapsed = round((time.perf_counter() - started) * 1000)
        try:
            self.send_response(reply.status)
            if flavor == "plain":
                self.send_header("Content-Type", reply.content_type or "application/json")
            elif flavor == "openai":
                self.send_header("Content-Type", "application/json")
                self.send_header("openai-processing-ms", str(elapsed))
                self.send_header("x-request-id", f"req_{uuid.uuid4().hex}")
            else:
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Server-Timing", f"gfet4t7; dur={elapsed}")
                self.send_header("Vary", "Origin, X-Origin, Referer")
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (its own timeout)

    def version_string(self) -> str:
        return "scaffolding on HTTPServer2"  # what Google's front end calls itself

    def log_request(self, code="-", size="-") -> None:
        pass  # _handle logs one line without the query string (it may hold the key)

    def log_message(self, format, *args) -> None:
        pass  # http.server's own messages can quote the request line, key included


def make_server(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> SandboxServer:
    """A bound, not yet serving sandbox (port 0 picks a free port; see ``base_url``)."""
    return SandboxServer(config or SandboxConfig(), (host, port))


@contextmanager
def running_sandbox(
    config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve a sandbox in a daemon thread for the ``with`` block; yields its base URL."""
    server = make_server(config, host, port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="sandbox-upstream",
        daemon=True,
    )
    thread.start()
    try:
        yield server.base_url
    finally:
        server.stop()
        thread.join(timeout=5)
