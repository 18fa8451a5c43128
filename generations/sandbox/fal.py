"""fal.ai's queue API for the sandbox, under the path prefix ``/fal`` (a provider's
base_url is ``{sandbox}/fal``; the real one is ``https://queue.fal.run``).

Wire facts relied on, and where they come from (looked up in late 2026):

* ``POST /{endpoint_id}`` (``?fal_webhook=URL``), ``Authorization: Key <key>``, answers
  ``{request_id, gateway_request_id, status: "IN_QUEUE", queue_position, status_url,
  response_url, cancel_url}``; ``GET …/requests/{id}/status`` (202 while IN_QUEUE or
  IN_PROGRESS, 200 when COMPLETED; ``?logs=1`` adds logs), ``GET …/requests/{id}`` (the
  result), ``PUT …/requests/{id}/cancel``. "The status, result, and cancel URLs use only
  the owner and the app. Do not build these URLs yourself", so for
  ``fal-ai/nano-banana/edit`` they are ``…/fal-ai/nano-banana/requests/{id}…``; the
  sandbox answers the subpath form with 404:
  https://fal.ai/docs/api-reference/inference-api, https://docs.fal.ai/model-endpoints/queue.
* Status bodies: fal-client (fal-ai/fal, projects/fal_client/src/fal_client/client.py,
  ``_parse_status``) reads ``queue_position`` for IN_QUEUE, ``logs`` for IN_PROGRESS and
  COMPLETED (a KeyError if missing, so the sandbox always sends the key, null without
  ``?logs=1``) and ``metrics``, ``error``, ``error_type`` for COMPLETED: a failed request
  is COMPLETED with ``error``/``error_type`` (its unit tests: "Runner disconnected" /
  ``runner_disconnected``, "Request timed out" / ``request_timeout``). Log entries are
  ``{message, level, source, timestamp}`` (fal's Rust crate, src/queue.rs ``RequestLog``).
* Cancel: "If the request is in the queue, fal removes it. If the request is in
  progress, fal sends a cancellation signal to the runner. The model app decides how to
  stop the work"; statuses OK, CANCELLATION_REQUESTED, ALREADY_COMPLETED, NOT_FOUND
  (https://fal.ai/docs/inference-api/queue/cancel). The sandbox answers 202
  ``{"status": "CANCELLATION_REQUESTED"}`` while queued (the request is dropped) and while
  in progress (the partner model does not stop: the request completes), 400
  ``{"status": "ALREADY_COMPLETED"}`` once done, 404 ``{"status": "NOT_FOUND"}``.
* Model errors: HTTP status, header ``X-Fal-Retryable`` ("true"/"false") and ``{"detail":
  [{loc, msg, type, url, ctx?, input?}]}``; types and wordings used here
  (``content_policy_violation`` 422 "The content could not be processed because it
  contained material flagged by a content checker.", ``no_media_generated`` 422 "The
  model did not generate the expected output for this prompt.", ``image_load_error``,
  ``file_download_error``, ``one_of``, ``greater_than_equal``, ``less_than_equal``,
  ``sequence_too_short``, ``sequence_too_long``, ``downstream_service_error`` 400,
  ``downstream_service_unavailable`` 500): https://fal.ai/docs/documentation/model-apis/errors.md.
  Request (infrastructure) errors are flat ``{"detail": str, "error_type": str}`` with
  ``X-Fal-Error-Type``: ``runner_scheduling_failure`` 503, ``request_timeout`` 504,
  ``internal_error`` 500, ``client_cancelled`` 499
  (https://fal.ai/docs/documentation/model-apis/request-errors). Input validation runs
  on the runner, so an invalid request is queued and completes with its 422 (fal's
  webhook docs show a missing field coming back as an ERROR webhook).
* The result "has the status code, headers, and body that the model returned. If the
  model returned an error, this operation returns the same error"
  (https://fal.ai/docs/inference-api/queue/result).
* Out of credit: 403 ``{"detail": "User is locked. Reason: Exhausted balance. Top up your
  balance at fal.ai/dashboard/billing."}`` (quoted from live answers in several public
  repositories); an unknown key: 401 ``{"detail": "No user found for Key ID and
  Secret"}`` (fal-ai/fal#1068, fal-ai/fal-swift#8).
* Webhooks: POST ``{request_id, gateway_request_id, status: "OK"|"ERROR", payload,
  error}`` (an error: ``"error": "Invalid status code: 422"`` and the error body as
  payload), signed with Ed25519 over ``request_id\\nuser_id\\ntimestamp\\nsha256hex(body)``
  in ``X-Fal-Webhook-Request-Id``, ``-User-Id``, ``-Timestamp`` (Unix seconds) and
  ``-Signature`` (hex); public keys as a JWKS ``{"keys": [{"kty": "OKP", "crv":
  "Ed25519", "x", "kid"}]}`` at https://rest.alpha.fal.ai/.well-known/jwks.json, served
  here at ``GET /fal/.well-known/jwks.json`` (https://fal.ai/docs/model-apis/webhooks and
  the verifiers in public code that follow it; fal-ai/fal-js#153 for an ERROR payload).
* Endpoints, inputs and their validation: see ``fal_input``. Output ``{"images": [{url,
  content_type, file_name, file_size, width, height}], "description": ""}`` (fal's
  ``File`` fields), the files served by the sandbox at ``/files/{name}``.

Not confirmed, the sandbox's own choices: the 401 body for a missing key, the 404 body
for an unknown endpoint, the 429 body (fal queues past a concurrency limit; an injected
rate_limit answers 429 at submit), the ``error`` text a failed model request shows in
its status ("Invalid status code: N", as in the webhook), the 400 body for a result
asked before completion (``{"detail": "Request is still in progress"}``, a string public
code checks for), a cancelled request's ``client_cancelled`` result, and that no webhook
is sent for a request cancelled while queued.

Fault classes take fal's forms: rate_limit/daily_quota → 429 at submit; out_of_credit →
403 at submit; unavailable/saturated → 503 ``runner_scheduling_failure``; internal → 500
``internal_error``; timeout → no answer at submit; prompt_block/image_safety → completes
with 422 ``content_policy_violation``; no_image/text_only → 422 ``no_media_generated``;
deadline → 504 ``request_timeout``; region → 400 ``downstream_service_error``; capacity
→ 500 ``downstream_service_unavailable``; malformed → the finished status and result are
unreadable JSON; truncated → the image file is cut short; slow_queue → the job runs
``slow_queue_seconds`` longer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from generations.sandbox import media
from generations.sandbox.fal_input import (
    APPS,
    ENDPOINTS,
    Endpoint,
    Invalid,
    Params,
    error,
    parse_params,
)
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.state import Reply, Request

FAL_USER_ID = "sandbox|fal-user"  # what X-Fal-Webhook-User-Id says
LOCKED = (
    "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."
)
INVALID_DURATION = 0.05  # seconds an invalid request spends on the runner before its 422
STATUS_PATH = re.compile(
    r"^/(?P<app>[^/]+/[^/]+)/requests/(?P<id>[^/]+)(?P<tail>/status|/cancel)?$"
)
JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class Outcome:
    status: int
    body: dict
    error: str | None = None
    error_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    inference_time: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200


class FalAPI:
    """The /fal routes; jobs live on the shared QueueEngine."""

    def __init__(self, config, state, engine) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_x = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        self.kid = hashlib.sha256(raw).hexdigest()[:16]

    def jwks(self) -> dict:
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": self.public_x, "kid": self.kid}]}

    def handle(self, req: Request) -> Reply:
        if req.method == "GET" and req.path == JWKS_PATH:
            return Reply.of(200, self.jwks())
        refused = self._check_key(req)
        if refused is not None:
            return refused
        route = STATUS_PATH.match(req.path)
        if route and route["app"] in APPS:
            return self._request_route(req, route["app"], route["id"], route["tail"] or "")
        endpoint_id = req.path.strip("/")
        if req.method == "POST" and endpoint_id in ENDPOINTS:
            return self._submit(req, endpoint_id)
        return Reply.of(404, {"detail": f"Application '{endpoint_id}' not found"}, "not_found")

    def _check_key(self, req: Request) -> Reply | None:
        scheme, _, key = (req.headers.get("Authorization") or "").partition(" ")
        key = key.strip() if scheme.lower() == "key" else ""
        if not key:
            body = {"detail": "Authentication is required to access this endpoint."}
            return Reply.of(401, body, "no_key")
        if key in self.config.invalid_keys:
            return Reply.of(
                401, {"detail": "No user found for Key ID and Secret"}, "api_key_invalid"
            )
        return None

    @staticmethod
    def _key_of(req: Request) -> str:
        return (req.headers.get("Authorization") or "").partition(" ")[2].strip()

    # --- submit ---------------------------------------------------------------------

    def _submit(self, req: Request, endpoint_id: str) -> Reply:
        self.state.count_request()
        key = self._key_of(req)
        try:
            body = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError):
            body = None
        prompt = body.get("prompt") if isinstance(body, dict) else None
        prompt = prompt if isinstance(prompt, str) else ""
        bad_trigger = None
        try:
            fault = self.state.fault_for(prompt, key)
        except BadRequest as exc:
            fault, bad_trigger = None, str(exc)
        if self.state.check_quota(key) is not None and fault is None:
            fault = "rate_limit"
        refused = _refusal_at_submit(fault)
        if refused is not None:
            return refused
        endpoint = ENDPOINTS[endpoint_id]
        app = "/".join(endpoint_id.split("/")[:2])
        params: Params | Invalid
        try:
            params = parse_params(endpoint, body, self.engine.files, req.origin)
            if bad_trigger:
                raise Invalid([error("value_error", bad_trigger, ["prompt"], prompt)])
        except Invalid as exc:
            params = exc
        duration = INVALID_DURATION if isinstance(params, Invalid) else None
        request_id = str(uuid.uuid4())
        base = f"{req.origin}/fal/{app}/requests/{request_id}"
        data = {
            "endpoint": endpoint,
            "app": app,
            "params": params,
            "webhook": req.param("fal_webhook"),
            "base": base,
            "origin": req.origin,
        }
        lane = ("fal", key)
        job = self.engine.submit(lane, request_id, prompt, fault, duration=duration, data=data)
        if data["webhook"]:
            self.engine.webhooks.schedule(job.end, lambda: self._webhook(job))
        answer = {
            "status": "IN_QUEUE",
            "request_id": request_id,
            **self._urls(job),
            "gateway_request_id": request_id,
            "queue_position": self.engine.position(job, time.monotonic()),
        }
        return Reply.of(200, answer, "queued", headers=(("x-fal-request-id", request_id),))

    # --- status, result, cancel ---------------------------------------------------------

    def _request_route(self, req: Request, app: str, request_id: str, tail: str) -> Reply:
        job = self.engine.get(request_id)
        if job is None or job.data.get("app") != app or job.lane[1] != self._key_of(req):
            if tail == "/cancel":
                return Reply.of(404, {"status": "NOT_FOUND"}, "not_found")
            return Reply.of(404, {"detail": f"Request {request_id} not found"}, "not_found")
        if tail == "/status" and req.method == "GET":
            self.engine.poll()
            return self._status(job, req.param("logs") in ("1", "true", "True"))
        if tail == "" and req.method == "GET":
            self.engine.poll()
            return self._result(job)
        if tail == "/cancel" and req.method == "PUT":
            return self._cancel(job)
        return Reply.of(405, {"detail": "Method Not Allowed"}, "not_found")

    def _state(self, job, now: float) -> str:
        if job.cancelled_at is not None and job.cancelled_at < job.start:
            return "CANCELLED"
        if now < job.start:
            return "IN_QUEUE"
        if now < job.end:
            return "IN_PROGRESS"
        return "COMPLETED"

    def _urls(self, job) -> dict:
        base = job.data["base"]
        return {
            "response_url": base,
            "status_url": f"{base}/status",
            "cancel_url": f"{base}/cancel",
        }

    def _status(self, job, with_logs: bool) -> Reply:
        now = time.monotonic()
        state = self._state(job, now)
        body: dict = {"status": state, "request_id": job.id, **self._urls(job)}
        if state == "IN_QUEUE":
            body.update(queue_position=self.engine.position(job, now), logs=None, metrics={})
            return Reply.of(202, body, "in_queue")
        logs = self._logs(job, now) if with_logs else None
        if state == "IN_PROGRESS":
            body.update(logs=logs, metrics={})
            return Reply.of(202, body, "in_progress")
        outcome = self._outcome(job)
        body.update(
            status="COMPLETED", logs=logs, metrics={"inference_time": outcome.inference_time}
        )
        if not outcome.ok:
            body.update(error=outcome.error, error_type=outcome.error_type)
        return self._maybe_malformed(job, Reply.of(200, body, "completed"))

    def _logs(self, job, now: float) -> list[dict]:
        def entry(t: float, message: str) -> dict:
            stamp = datetime.fromtimestamp(job.wall(t), UTC).isoformat().replace("+00:00", "Z")
            return {"message": message, "level": "INFO", "source": "user", "timestamp": stamp}

        if job.cancelled_at is not None and job.cancelled_at < job.start:
            return []
        logs = [entry(job.start, "Generating image...")]
        if now >= job.end and job.cancelled_at is None:
            logs.append(entry(job.end, "Done."))
        return logs

    def _result(self, job) -> Reply:
        state = self._state(job, time.monotonic())
        if state in ("IN_QUEUE", "IN_PROGRESS"):
            return Reply.of(400, {"detail": "Request is still in progress"}, "not_ready")
        outcome = self._outcome(job)
        headers = outcome.headers + (("x-fal-request-id", job.id),)
        reply = Reply.of(
            outcome.status, outcome.body, "result" if outcome.ok else "failed", headers
        )
        return self._maybe_malformed(job, reply)

    def _maybe_malformed(self, job, reply: Reply) -> Reply:
        if job.fault != "malformed":
            return reply
        return Reply(reply.status, media.cut_json(reply.body), "malformed", headers=reply.headers)

    def _cancel(self, job) -> Reply:
        now = time.monotonic()
        state = self._state(job, now)
        if state in ("COMPLETED", "CANCELLED"):
            return Reply.of(400, {"status": "ALREADY_COMPLETED"}, "already_completed")
        if state == "IN_QUEUE":
            self.engine.cancel(job, now)
        # In progress: the signal is passed on; the partner model finishes anyway.
        return Reply.of(202, {"status": "CANCELLATION_REQUESTED"}, "cancelled")

    # --- what the model made ------------------------------------------------------------

    def _outcome(self, job) -> Outcome:
        return job.outcome(self._make)

    def _make(self, job) -> Outcome:
        params = job.data["params"]
        duration = round(max(0.0, job.end - job.start), 3)
        if job.cancelled_at is not None and job.cancelled_at < job.start:
            detail = "Request cancelled by the client"
            return _request_error(499, detail, "client_cancelled", retryable=False)
        if isinstance(params, Invalid):
            return _model_error(422, params.errors, retryable=False)
        fault_outcome = _fault_outcome(job.fault, params)
        if fault_outcome is not None:
            fault_outcome.inference_time = duration
            return fault_outcome
        endpoint: Endpoint = job.data["endpoint"]
        width, height = dimensions(endpoint.model, params.aspect_ratio, params.image_size)
        pil_format, mime, extension = media.FORMATS[params.output_format]
        image = render_image(params.prompt, width, height, pil_format)
        if job.fault == "truncated":
            image = media.cut(image)
        images = []
        for _ in range(params.num_images):
            name = self.engine.store(image, extension, mime, job.end)
            images.append(
                {
                    "url": f"{job.data['origin']}/files/{name}",
                    "content_type": mime,
                    "file_name": name,
                    "file_size": len(image),
                    "width": width,
                    "height": height,
                }
            )
        return Outcome(200, {"images": images, "description": ""}, inference_time=duration)

    # --- webhooks -------------------------------------------------------------------

    def _webhook(self, job):
        if job.cancelled_at is not None and job.cancelled_at < job.start:
            return None  # cancelled while queued: nothing ran, nothing to report
        outcome = self._outcome(job)
        payload = {
            "request_id": job.id,
            "gateway_request_id": job.id,
            "status": "OK" if outcome.ok else "ERROR",
            "payload": outcome.body,
            "error": None if outcome.ok else f"Invalid status code: {outcome.status}",
        }
        body = json.dumps(payload).encode()
        if job.fault == "malformed":
            body = media.cut_json(body)
        return job.data["webhook"], body, self.sign(job.id, body)

    def sign(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """fal's webhook headers for ``body``: Ed25519 over id, user, time and the body's hash."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hashlib.sha256(body).hexdigest()
        message = f"{request_id}\n{FAL_USER_ID}\n{stamp}\n{digest}".encode()
        return {
            "Content-Type": "application/json",
            "X-Fal-Webhook-Request-Id": request_id,
            "X-Fal-Webhook-User-Id": FAL_USER_ID,
            "X-Fal-Webhook-Timestamp": stamp,
            "X-Fal-Webhook-Signature": self._key.sign(message).hex(),
        }


def _refusal_at_submit(fault: str | None) -> Reply | None:
    match fault:
        case "out_of_credit":
            return Reply.of(403, {"detail": LOCKED}, fault)
        case "rate_limit" | "daily_quota":
            headers = (("X-Fal-Retryable", "true"),)
            return Reply.of(429, {"detail": "Too many requests. Please slow down."}, fault, headers)
        case "unavailable" | "saturated":
            detail = "No runner could be allocated to handle the request."
            return _request_reply(503, detail, "runner_scheduling_failure", fault)
        case "internal":
            return _request_reply(
                500, "An unexpected internal error occurred.", "internal_error", fault
            )
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None


def _request_reply(status: int, detail: str, error_type: str, outcome: str) -> Reply:
    headers = (("X-Fal-Error-Type", error_type), ("X-Fal-Retryable", "true"))
    return Reply.of(status, {"detail": detail, "error_type": error_type}, outcome, headers)


def _fault_outcome(fault: str | None, params: Params) -> Outcome | None:
    match fault:
        case "prompt_block" | "image_safety":
            msg = (
                "The content could not be processed because it contained material flagged "
                "by a content checker."
            )
            loc = ["prompt"] if fault == "prompt_block" else []
            item = error("content_policy_violation", msg, loc, params.prompt)
            return _model_error(422, [item], retryable=False)
        case "no_image" | "text_only":
            msg = "The model did not generate the expected output for this prompt."
            item = error("no_media_generated", msg, [], {"prompt": params.prompt})
            return _model_error(422, [item], retryable=False)
        case "deadline":
            return _request_error(504, "Request timed out", "request_timeout", retryable=True)
        case "region":
            item = error(
                "downstream_service_error",
                "Downstream service error",
                [],
                {"prompt": params.prompt},
            )
            return _model_error(400, [item], retryable=False)
        case "capacity":
            msg = "Downstream service unavailable"
            item = error("downstream_service_unavailable", msg, [], {"prompt": params.prompt})
            return _model_error(500, [item], retryable=True)
    return None


def _model_error(status: int, errors: list[dict], *, retryable: bool) -> Outcome:
    headers = (("X-Fal-Retryable", "true" if retryable else "false"),)
    error = f"Invalid status code: {status}"
    return Outcome(status, {"detail": errors}, error=error, headers=headers)


def _request_error(status: int, detail: str, error_type: str, *, retryable: bool) -> Outcome:
    headers = (
        ("X-Fal-Error-Type", error_type),
        ("X-Fal-Retryable", "true" if retryable else "false"),
    )
    body = {"detail": detail, "error_type": error_type}
    return Outcome(status, body, error=detail, error_type=error_type, headers=headers)
