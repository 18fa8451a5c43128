"""The sandbox upstream: a real HTTP server that speaks Gemini's ``generateContent``
and OpenAI's Images API.

It is a test double of both APIs for tests, benchmarks, demos and the offline
default. It renders real images (``render``), answers in the exact wire shape
(``responses``), enforces a per-key RPM and daily quota, and injects faults:

* at random, by class, with ``SandboxConfig.rates`` (shares of all requests);
* deterministically, when the prompt contains ``[sandbox:CLASS]`` (always that
  class) or ``[sandbox:CLASSxN]`` (the first N requests with that exact prompt,
  then success), e.g. ``[sandbox:503x2]``. Classes are listed in ``TRIGGERS``.

Routes: ``POST /v1beta/models/{model}:generateContent``, ``GET /v1beta/models``
(models.list, ``pageSize`` and ``pageToken``) and ``GET /v1beta/models/{model}``
(models.get), key in ``x-goog-api-key`` or ``?key=``; ``POST /v1/images/generations``
and ``POST /v1/images/edits`` (key as ``Authorization: Bearer``, see
``openai_images``), where the same faults take OpenAI's forms (a daily quota is
``insufficient_quota``, blocks are ``moderation_blocked``, NO_IMAGE and text-only
answers an empty ``data``); ``GET /healthz``. Anything else is a 404 in the envelope
of the API its path belongs to.

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

import base64
import binascii
import json
import logging
import random
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
from generations.sandbox.parse import BadRequest, GenerateRequest, parse_request
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.specs import MODELS, find_model, upstream_model
from generations.sandbox.state import (
    Refusal,
    Reply,
    SandboxConfig,
    SandboxState,
    gemini_refusal,
    openai_refusal,
)

log = logging.getLogger(__name__)

GENERATE_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")
MODELS_PATH = "/v1beta/models"
MODEL_PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+)$")
MODELS_PAGE_SIZE = 5  # models.list's default page; Google's is 50 (see the docstring)
MAX_MODELS_PAGE_SIZE = 1000  # Google's cap
OPENAI_PATHS = {"/v1/images/generations": "generations", "/v1/images/edits": "edits"}
MAX_BODY_BYTES = 20 * 1024 * 1024  # Gemini's limit for a request with inline data
INJECTED_RETRY_DELAY = 1.5  # seconds, in the RetryInfo of an injected per-minute 429
FREE_TIER_RPM = 10  # the limit an injected 429 quotes when no rpm is configured


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once; the default is 5

    def __init__(self, config: SandboxConfig, address: tuple[str, int]) -> None:
        self.config = config
        self.state = SandboxState(config)
        self.stopping = threading.Event()  # wakes requests that are sleeping or hanging
        super().__init__(address, _Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def answer(self, model: str, key: str, raw: bytes) -> Reply:
        """The whole decision for one generateContent call."""
        self.state.count_request()
        refused = self._check_key(key)
        if refused is not None:
            return refused
        spec = find_model(model)
        if spec is None or not spec.generates_content or not self.config.can_see(key, model):
            return Reply.of(404, responses.model_not_found_body(model), "model_not_found")
        refused = self.state.admit(key, model)
        if refused is not None:
            return refused
        try:
            request = parse_request(model, raw)
            fault = self.state.fault_for(request.prompt)
        except BadRequest as exc:
            return Reply.of(400, responses.invalid_argument_body(str(exc)), "invalid_argument")
        self.stopping.wait(self.state.latency())
        return self._reply(request, fault, self.state.request_rng())

    def _reply(self, req: GenerateRequest, fault: str | None, rng: random.Random) -> Reply:
        if fault in (None, "text_only", "truncated"):
            return self._generated(req, fault, rng)
        return self._fault(req, fault, rng)

    def _fault(self, req: GenerateRequest, fault: str, rng: random.Random) -> Reply:
        model, prompt, refs, level = req.model, req.prompt, req.references, req.thinking_level
        match fault:
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
            case "rate_limit":
                limit = self.config.rpm or FREE_TIER_RPM
                body = responses.rate_limited_body(model, INJECTED_RETRY_DELAY, limit=limit)
                return Reply.of(429, body, fault)
            case "daily_quota":
                return gemini_refusal(model, self.state.injected_daily())
            case "unavailable":
                return Reply.of(503, responses.unavailable_body(), fault)
            case "internal":
                return Reply.of(500, responses.internal_body(), fault)
            case "region":
                return Reply.of(400, responses.region_refused_body(), fault)
            case "deadline":
                return Reply.of(504, responses.deadline_body(), fault)
            case "prompt_block":
                body = responses.prompt_blocked_body(model, prompt, references=refs, rng=rng)
                return Reply.of(200, body, fault)
            case "image_safety" | "no_image":
                reason = fault.upper()
                body = responses.no_content_body(
                    model, prompt, reason, references=refs, thinking_level=level, rng=rng
                )
                return Reply.of(200, body, fault)
            case "malformed":
                body = responses.text_only_body(
                    model, prompt, references=refs, thinking_level=level, rng=rng
                )
                whole = json.dumps(body, indent=2).encode()
                return Reply(200, whole[: len(whole) // 2], fault)
        raise AssertionError(f"unhandled fault {fault}")

    def _generated(self, req: GenerateRequest, fault: str | None, rng: random.Random) -> Reply:
        """What the model made: an image (perhaps truncated on the way) or only text."""
        if fault == "text_only" or "IMAGE" not in req.modalities:
            body = responses.text_only_body(
                req.model,
                req.prompt,
                references=req.references,
                thinking_level=req.thinking_level,
                grounded=req.grounded,
                rng=rng,
            )
            return Reply.of(200, body, fault or "ok")
        width, height = dimensions(req.model, req.aspect_ratio, req.image_size)
        image = render_image(req.prompt, width, height, upstream_model(req.model).image_format)
        body = responses.image_body(
            req.model,
            req.prompt,
            image,
            image_size=req.image_size,
            references=req.references,
            with_text="TEXT" in req.modalities,
            thinking_level=req.thinking_level,
            grounded=req.grounded,
            rng=rng,
        )
        if fault == "truncated":
            inline = body["candidates"][0]["content"]["parts"][-1]["inlineData"]
            # Cut on a 4-character boundary: the base64 still decodes, the image does not.
            inline["data"] = inline["data"][: len(inline["data"]) * 2 // 5 // 4 * 4]
        return Reply.of(200, body, fault or "ok")

    def _check_key(self, key: str) -> Reply | None:
        if not key:
            return Reply.of(403, responses.permission_denied_body(), "no_key")
        if key in self.config.invalid_keys:
            return Reply.of(400, responses.api_key_invalid_body(), "api_key_invalid")
        return None

    def answer_models_list(self, key: str, query: str) -> Reply:
        """models.list: the models ``key`` can see, a page at a time."""
        refused = self._check_key(key)
        if refused is not None:
            return refused
        params = parse_qs(query)
        try:
            size = _page_size(params.get("pageSize", params.get("page_size", [""]))[0])
            start = _page_offset(params.get("pageToken", params.get("page_token", [""]))[0])
        except BadRequest as exc:
            return Reply.of(400, responses.invalid_argument_body(str(exc)), "invalid_argument")
        visible = [m for name, m in MODELS.items() if self.config.can_see(key, name)]
        page = visible[start : start + size]
        more = start + size < len(visible)
        token = _page_token(start + size) if more else None
        return Reply.of(200, responses.models_page(page, token))

    def answer_model_get(self, model: str, key: str) -> Reply:
        """models.get: one Model, or 404 when ``key`` cannot see it."""
        refused = self._check_key(key)
        if refused is not None:
            return refused
        if not self.config.can_see(key, model):
            body = responses.model_not_found_body(model, "get")
            return Reply.of(404, body, "model_not_found")
        return Reply.of(200, responses.model_resource(upstream_model(model)))

    def answer_openai(
        self, endpoint: str, key: str, raw: bytes, content_type: str
    ) -> tuple[str, Reply]:
        """The whole decision for one Images call, and the model it named (for the log).

        Unlike Gemini's, the body is read before the quota is counted: OpenAI's
        limits are per model, and the model is in the body.
        """
        self.state.count_request()
        if not key:
            return "-", Reply.of(401, openai.missing_key_body(), "no_key")
        if key in self.config.invalid_keys:
            return "-", Reply.of(401, openai.invalid_key_body(key), "api_key_invalid")
        try:
            if endpoint == "edits":
                request = openai.parse_edits(raw, content_type)
            else:
                request = openai.parse_generations(raw)
        except openai.InvalidRequest as exc:
            return "-", Reply.of(400, exc.body(), "invalid_argument")
        refused = self.state.check_quota(key)
        if refused is not None:
            return request.model, openai_refusal(request.model, refused)
        try:
            fault = self.state.fault_for(request.prompt)
        except BadRequest as exc:
            body = openai.InvalidRequest(str(exc), param="prompt").body()
            return request.model, Reply.of(400, body, "invalid_argument")
        self.stopping.wait(self.state.latency())
        return request.model, self._openai_reply(request, fault)

    def _openai_reply(self, req: openai.ImagesRequest, fault: str | None) -> Reply:
        match fault:
            case None | "truncated":
                return self._openai_generated(req, fault)
            case "no_image" | "text_only":  # the Images API has no text answer: nothing made
                return Reply.of(200, openai.image_body(req, []), fault)
            case "timeout":
                return Reply(0, outcome=fault, hang=True)
            case "rate_limit":
                limit = self.config.rpm or FREE_TIER_RPM
                refusal = Refusal(per_day=False, wait=INJECTED_RETRY_DELAY, limit=limit)
                return openai_refusal(req.model, refusal, fault)
            case "daily_quota":
                return openai_refusal(req.model, self.state.injected_daily(), fault)
            case "unavailable":
                return Reply.of(503, openai.unavailable_body(), fault)
            case "internal":
                return Reply.of(500, openai.internal_body(), fault)
            case "region":
                return Reply.of(403, openai.region_refused_body(), fault)
            case "deadline":
                return Reply.of(504, openai.timeout_body(), fault)
            case "prompt_block" | "image_safety":
                return Reply.of(400, openai.blocked_body(req.model), fault)
            case "malformed":
                whole = json.dumps(openai.image_body(req, []), indent=2).encode()
                return Reply(200, whole[: len(whole) // 2], fault)
        raise AssertionError(f"unhandled fault {fault}")

    def _openai_generated(self, req: openai.ImagesRequest, fault: str | None) -> Reply:
        width, height = req.dimensions()
        image = render_image(req.prompt, width, height, openai.OUTPUT_FORMATS[req.output_format])
        body = openai.image_body(req, [image] * req.n)
        if fault == "truncated":
            item = body["data"][0]
            # Cut on a 4-character boundary: the base64 still decodes, the image does not.
            item["b64_json"] = item["b64_json"][: len(item["b64_json"]) * 2 // 5 // 4 * 4]
        return Reply.of(200, body, fault or "ok")

    def stop(self) -> None:
        self.stopping.set()
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
        raw = self._read_body()
        model = "-"
        route = GENERATE_PATH.match(url.path)
        is_openai = url.path.startswith("/v1/")
        if self.command == "POST" and route:
            model = unquote(route["model"])
            if raw is None:
                message = f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes."
                reply = Reply.of(400, responses.invalid_argument_body(message), "too_large")
            else:
                reply = self.server.answer(model, self._api_key(url.query), raw)
        elif self.command == "POST" and url.path in OPENAI_PATHS:
            if raw is None:
                reply = Reply.of(413, openai.too_large_body(MAX_BODY_BYTES), "too_large")
            else:
                content_type = self.headers.get("Content-Type") or ""
                model, reply = self.server.answer_openai(
                    OPENAI_PATHS[url.path], self._bearer_key(), raw, content_type
                )
        elif self.command == "GET" and url.path == MODELS_PATH:
            reply = self.server.answer_models_list(self._api_key(url.query), url.query)
        elif self.command == "GET" and (listed := MODEL_PATH.match(url.path)):
            model = unquote(listed["model"])
            reply = self.server.answer_model_get(model, self._api_key(url.query))
        elif self.command == "GET" and url.path == "/healthz":
            health = {"status": "ok", "upstream": "sandbox", "requests": self.server.state.requests}
            reply = Reply.of(200, health)
        elif is_openai:
            reply = Reply.of(404, openai.not_found_body(self.command, url.path), "not_found")
        else:
            reply = Reply.of(404, responses.not_found_body(url.path), "not_found")
        self._send(reply, started, is_openai)
        # The path without its query string: ?key= must never reach a log.
        log.log(
            logging.DEBUG if url.path == "/healthz" else logging.INFO,
            "%s %s model=%s status=%s outcome=%s %.0fms",
            self.command,
            url.path,
            model,
            reply.status or "-",
            reply.outcome,
            (time.perf_counter() - started) * 1000,
        )

    def _read_body(self) -> bytes | None:
        """The request body; None when it is too large to read."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0  # answered as an unreadable JSON payload
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the unread body makes the connection unusable
            return None
        return self.rfile.read(length) if length else b""

    def _api_key(self, query: str) -> str:
        return self.headers.get("x-goog-api-key") or parse_qs(query).get("key", [""])[0]

    def _bearer_key(self) -> str:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def _send(self, reply: Reply, started: float, is_openai: bool = False) -> None:
        if reply.hang:
            self.server.stopping.wait(self.server.config.hang_seconds)
            self.close_connection = True
            return
        elapsed = round((time.perf_counter() - started) * 1000)
        try:
            self.send_response(reply.status)
            if is_openai:
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


def _page_size(raw: str) -> int:
    """models.list's pageSize: unset or 0 is the default page, more than 1000 is 1000."""
    if not raw:
        return MODELS_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(f"Invalid value at 'page_size' (TYPE_INT32), {json.dumps(raw)}") from None
    if size < 0:
        raise BadRequest("page_size must not be negative.")  # the sandbox's wording
    return min(size, MAX_MODELS_PAGE_SIZE) or MODELS_PAGE_SIZE


def _page_token(offset: int) -> str:
    """An opaque token for the page starting at ``offset`` (Google's are opaque too)."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _page_offset(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        offset = None
    if not isinstance(offset, int) or offset < 0:
        raise BadRequest("Invalid page token.")  # the sandbox's wording
    return offset


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
