"""Replicate's predictions API for the sandbox, under ``/replicate/v1`` (a provider's
base_url is ``{sandbox}/replicate/v1``; the real one is ``https://api.replicate.com/v1``).

Wire facts relied on, and where they come from (looked up in late 2026):

* ``POST /models/{owner}/{name}/predictions`` with ``{"input": {…}, "webhook",
  "webhook_events_filter"}``, ``Authorization: Bearer r8_…``; ``GET /predictions/{id}``;
  ``POST /predictions/{id}/cancel``; ``GET /webhooks/default/secret`` → ``{"key": "…"}``
  (replicate-python-beta, src/replicate/resources/models/predictions.py,
  predictions.py, webhooks/default/secret.py, generated from Replicate's OpenAPI spec).
* The prediction: ``id, model, version, input, logs, output, data_removed, error,
  status, created_at, started_at, completed_at, urls {get, cancel, web, stream?},
  metrics {predict_time, total_time}``, ``source``, and ``deadline`` when one is set
  (the same files: types/prediction.py and the predictions.get example). Terminated
  predictions carry ``metrics``; "All input parameters, output values, and logs are
  automatically removed after an hour" (``output`` null, ``data_removed`` true): the
  sandbox does so after ``SandboxConfig.file_ttl``.
* Statuses starting, processing, succeeded, failed, canceled, aborted; "aborted: the
  prediction exceeded its deadline before it could start running", "canceled: … by the
  user or exceeded its deadline after starting"
  (https://replicate.com/docs/topics/predictions/lifecycle). ``Cancel-After`` sets the
  deadline (``1m`` in Replicate's example; the sandbox reads Go-style durations such as
  ``30s``, ``5m``, ``1h30m``, ``500ms`` and bare seconds), ``Prefer: wait`` holds the
  answer up to 60 s and ``Prefer: wait=N`` up to N; "If this time is exceeded the
  prediction will be returned in a "starting" state"
  (https://replicate.com/changelog/2025-10-16-prediction-deadlines and the create
  docstrings above). Create answers 201.
* Webhooks: the body is the prediction; events ``start``, ``output``, ``logs``,
  ``completed``; "By default, we will send requests to your webhook URL whenever there
  are new outputs or the prediction has finished" (output and completed); retried "a
  few times" (the ``webhook_events_filter`` docstring). Signed as Standard Webhooks do:
  ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256 of
  "{id}.{timestamp}.{body}">`` keyed with the base64-decoded part of ``whsec_…``
  (https://www.standardwebhooks.com, shared/CHANNELS.md).
* Models: ``google/nano-banana`` (prompt, image_input, aspect_ratio incl.
  ``match_input_image``, output_format jpg/png), ``google/nano-banana-2`` (the same, the
  14 ratios, resolution 1K/2K/4K) and ``google/nano-banana-pro`` (resolution 1K/2K/4K
  default 2K, output_format default jpg, safety_filter_level ``block_low_and_above`` |
  ``block_medium_and_above`` | ``block_only_high`` default the last, image_input up to 14,
  ``allow_fallback_model`` default false: "Fallback to another model (currently
  bytedance/seedream-5) if Nano Banana Pro is at capacity"); output is one URI string
  (https://replicate.com/google/nano-banana-pro/versions/99256cc4…/api, the versions
  of nano-banana-2, and a copy of the pro input schema in public code).
* The fallback: "If Nano Banana Pro hits a rate limit, it tries to generate the image
  with Seedream 5.0 lite instead"; not for 4K nor for 4:5 and 5:4 (then "the original
  rate limit error is returned"); 1K is made at 2K and downscaled; "your logs still show
  a prediction to Nano Banana Pro. You can tell the fallback was used by checking the
  resolution field in your output — it says "fallback""
  (https://replicate.com/changelog/2026-03-02-fallback-model-for-nano-banana-pro). The
  output schema is a bare URI, with no resolution field to mark: the sandbox puts a
  clear marker in ``logs`` instead (``Falling back to bytedance/seedream-5-lite``).
* ``GET /account`` → ``{type, username, name, github_url}`` (replicate-python-beta,
  src/replicate/resources/account.py and types/account_get_response.py): what the
  admin's *Test connection* reads.
* Errors are problem+json ``{title, detail, status}``: 401 "Unauthenticated" / "You did
  not pass a valid authentication token"; 402 "Insufficient credit" / "You have
  insufficient credit to run this model. Go to https://replicate.com/account/billing#billing
  to purchase credit. Once you purchase credit, please wait a few minutes before trying
  again."; 429 "Request was throttled" / "Request was throttled. Your rate limit resets in
  ~30s." with ``Retry-After`` (all quoted from live answers kept in public code and
  issues). A blocked prediction fails with "The input or output was flagged as
  sensitive (E005)" (as live errors are quoted in public code).

Not confirmed, the sandbox's own choices: the 422 body (``title`` "Input validation
failed", ``detail`` lines ``- input.<field>: …``, ``invalid_fields``), the 404 and 5xx
bodies, the 401 wording for a missing token ("You did not pass an authentication
token"), the wording of a transient failure ("… (E1000)"), of a prediction that made no
image, and of the rate-limit failure at capacity without fallback (Google's
"Resource has been exhausted (e.g. check quota)."), the logs' text, and the version ids
of nano-banana (the pro and 2 ids are those of the pages above).

Fault classes take Replicate's forms: out_of_credit → 402 at submit; rate_limit and
daily_quota → 429 at submit; unavailable → 503 and internal → 500 at submit; timeout →
no answer at submit; prompt_block/image_safety → ``failed`` with E005; no_image/text_only
→ ``failed``, no image; deadline → ``failed`` with an E1000-class error; region →
``failed`` with Google's location error; capacity/saturated → served by the fallback
model when allowed and possible, else ``failed`` with the rate-limit error; malformed →
the finished prediction is unreadable JSON; truncated → the output file is cut short;
slow_queue → the prediction runs ``slow_queue_seconds`` longer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from generations.sandbox import media
from generations.sandbox.parse import BadRequest
from generations.sandbox.render import dimensions, render_image
from generations.sandbox.specs import ALL_ASPECT_RATIOS, ASPECT_RATIOS
from generations.sandbox.state import Reply, Request

PROBLEM = "application/problem+json"
MODEL_PATH = re.compile(r"^/models/(?P<owner>[^/]+)/(?P<name>[^/]+)/predictions$")
PREDICTION_PATH = re.compile(r"^/predictions/(?P<id>[a-z0-9]+)(?P<cancel>/cancel)?$")
SECRET_PATH = "/webhooks/default/secret"
EVENTS = ("start", "output", "logs", "completed")
DEFAULT_EVENTS = ("output", "completed")
SAFETY_LEVELS = ("block_low_and_above", "block_medium_and_above", "block_only_high")
FALLBACK_MODEL = "bytedance/seedream-5-lite"
FALLBACK_REFUSES = ("4:5", "5:4")
MAX_WAIT = 60
THROTTLE_WAIT = 2  # seconds an injected 429 asks for
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
CREDIT = (
    "You have insufficient credit to run this model. Go to "
    "https://replicate.com/account/billing#billing to purchase credit. Once you purchase "
    "credit, please wait a few minutes before trying again."
)
SENSITIVE = "The input or output was flagged as sensitive (E005)"
TRANSIENT = "Prediction failed for an unknown reason. Please try again. (E1000)"
NO_IMAGE = "The model did not return an image. Try again with a different prompt."
AT_CAPACITY = "Resource has been exhausted (e.g. check quota)."
REGION = "User location is not supported for the API use."


@dataclass(frozen=True)
class Model:
    name: str  # google/…
    sandbox: str  # the specs model that renders it
    version: str
    ratios: tuple[str, ...]
    resolutions: tuple[str, ...] = ()
    default_resolution: str = "1K"
    pro: bool = False  # takes safety_filter_level and allow_fallback_model


MODELS = {
    "nano-banana": Model(
        "google/nano-banana",
        "gemini-2.5-flash-image",
        hashlib.sha256(b"google/nano-banana").hexdigest(),
        ("match_input_image", *ASPECT_RATIOS),
    ),
    "nano-banana-pro": Model(
        "google/nano-banana-pro",
        "gemini-3-pro-image",
        "99256cc418d9ac41854575e2f1c8846ce2defd0c0fb6ff2d5cbc3c826be75bc8",
        ("match_input_image", *ASPECT_RATIOS),
        ("1K", "2K", "4K"),
        "2K",
        pro=True,
    ),
    "nano-banana-2": Model(
        "google/nano-banana-2",
        "gemini-3.1-flash-image",
        "4ff88d446aad4c0d42d5409f6a746681e84d3e4f8ba008a69b4be8263a603a97",
        ("match_input_image", *ALL_ASPECT_RATIOS),
        ("1K", "2K", "4K"),
    ),
}


@dataclass(frozen=True)
class Params:
    prompt: str
    aspect_ratio: str
    image_size: str
    output_format: str
    allow_fallback: bool
    references: int


@dataclass
class Outcome:
    status: str  # succeeded | failed
    output: str | None = None
    error: str | None = None
    logs: str = ""


class _Invalid(Exception):
    def __init__(self, fields: list[tuple[str, str, str]]) -> None:
        super().__init__("invalid input")
        self.fields = fields  # (field, type, description)


def problem(status: int, title: str, detail: str, outcome: str, headers=(), **extra) -> Reply:
    body = {"title": title, "detail": detail, "status": status, **extra}
    return Reply.of(status, body, outcome, headers, content_type=PROBLEM)


def _enum(name: str, value, allowed: tuple[str, ...]) -> tuple[str, str, str]:
    listed = ", ".join(f'"{v}"' for v in allowed)
    return f"input.{name}", "enum", f"{name} must be one of the following: {listed}"


def parse_input(model: Model, body: object, files, origin: str) -> Params:
    """The prediction's input, checked against the model's schema (422 on failure)."""
    if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
        raise _Invalid([("input", "required", "input is required")])
    data = body["input"]
    fields: list[tuple[str, str, str]] = []
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        fields.append(("input", "required", "prompt is required"))
    ratio = data.get("aspect_ratio", "match_input_image")
    if ratio not in model.ratios:
        fields.append(_enum("aspect_ratio", ratio, model.ratios))
    size = "1K"
    if model.resolutions:
        size = data.get("resolution", model.default_resolution)
        if size not in model.resolutions:
            fields.append(_enum("resolution", size, model.resolutions))
    fmt = data.get("output_format", "jpg")
    if fmt not in ("jpg", "png"):
        fields.append(_enum("output_format", fmt, ("jpg", "png")))
    if model.pro and data.get("safety_filter_level", SAFETY_LEVELS[-1]) not in SAFETY_LEVELS:
        fields.append(_enum("safety_filter_level", data["safety_filter_level"], SAFETY_LEVELS))
    fallback = data.get("allow_fallback_model", False)
    if model.pro and not isinstance(fallback, bool):
        fields.append(
            ("input.allow_fallback_model", "invalid_type", "Invalid type. Expected: boolean")
        )
    references = _references(data.get("image_input", []), files, origin, fields)
    if fields:
        raise _Invalid(fields)
    if ratio == "match_input_image":
        fixed = model.ratios[1:]
        ratio = (
            media.closest_ratio(references[0].width, references[0].height, fixed)
            if references
            else "1:1"
        )
    return Params(prompt, ratio, size, fmt, model.pro and fallback is True, len(references))


def _references(value, files, origin: str, fields: list) -> list[media.Reference]:
    if not isinstance(value, list):
        fields.append(("input.image_input", "invalid_type", "Invalid type. Expected: array"))
        return []
    if len(value) > 14:
        fields.append(("input.image_input", "array_max_items", "Array must have at most 14 items"))
        return []
    references = []
    for i, url in enumerate(value):
        try:
            references.append(media.load_reference(url, files, origin))
        except media.BadImage as exc:
            fields.append(
                (f"input.image_input.{i}", "format", f"Does not match format 'uri': {exc}")
            )
    return references


def parse_duration(text: str) -> float:
    """A Cancel-After value in seconds: "30s", "5m", "1h30m", "500ms" or bare seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not text or DURATION.sub("", text):
        raise ValueError(text)
    return sum(float(n) * UNITS[unit] for n, unit in DURATION.findall(text))


def parse_wait(prefer: str) -> float | None:
    """Seconds a ``Prefer: wait[=N]`` header asks to wait; None when it asks nothing."""
    for token in prefer.split(","):
        name, _, value = token.strip().partition("=")
        if name.strip().lower() != "wait":
            continue
        if not value:
            return MAX_WAIT
        try:
            return min(MAX_WAIT, max(0.0, float(value)))
        except ValueError:
            return None
    return None


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReplicateAPI:
    """The /replicate/v1 routes; predictions are jobs on the shared QueueEngine."""

    def __init__(self, config, state, engine, stopping) -> None:
        self.config = config
        self.state = state
        self.engine = engine
        self.stopping = stopping

    def handle(self, req: Request) -> Reply:
        key = self._key_of(req)
        if not key:
            detail = "You did not pass an authentication token"
            return problem(401, "Unauthenticated", detail, "no_key")
        if key in self.config.invalid_keys:
            detail = "You did not pass a valid authentication token"
            return problem(401, "Unauthenticated", detail, "api_key_invalid")
        if req.method == "GET" and req.path == "/account":
            account = {"type": "user", "username": "sandbox", "name": "Sandbox", "github_url": None}
            return Reply.of(200, account, "account")
        route = MODEL_PATH.match(req.path)
        if (
            req.method == "POST"
            and route
            and route["owner"] == "google"
            and route["name"] in MODELS
        ):
            return self._create(req, key, MODELS[route["name"]])
        found = PREDICTION_PATH.match(req.path)
        if found:
            job = self.engine.get(found["id"])
            if job is not None and job.lane == ("replicate", key):
                if req.method == "GET" and not found["cancel"]:
                    self.engine.poll()
                    return self._answer(job, 200)
                if req.method == "POST" and found["cancel"]:
                    return self._cancel(job)
        if req.method == "GET" and req.path == SECRET_PATH:
            return Reply.of(200, {"key": self.config.replicate_webhook_secret})
        return problem(404, "Not found", "The requested resource could not be found.", "not_found")

    @staticmethod
    def _key_of(req: Request) -> str:
        scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "token") else ""

    # --- create ---------------------------------------------------------------------

    def _create(self, req: Request, key: str, model: Model) -> Reply:
        self.state.count_request()
        try:
            body = json.loads(req.body or b"")
        except (ValueError, UnicodeDecodeError):
            return problem(400, "Invalid JSON", "The request body is not valid JSON.", "invalid")
        try:
            params = parse_input(model, body, self.engine.files, req.origin)
            webhook, events = _webhook_fields(body)
            cancel_after = req.headers.get("Cancel-After")
            deadline = parse_duration(cancel_after) if cancel_after else None
        except _Invalid as exc:
            return _invalid(exc.fields)
        except ValueError:
            detail = f"Invalid Cancel-After duration: {cancel_after!r}"
            return problem(422, "Invalid header", detail, "invalid")
        try:
            fault = self.state.fault_for(params.prompt, key)
        except BadRequest as exc:
            return _invalid([("input.prompt", "invalid", str(exc))])
        refusal = self.state.check_quota(key)
        if fault is None and refusal is not None:
            fault = "daily_quota" if refusal.per_day else "rate_limit"
        refused = _refusal_at_submit(fault, refusal.wait if refusal else THROTTLE_WAIT)
        if refused is not None:
            return refused
        prediction_id = base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()
        fallback = fault in ("capacity", "saturated") and _can_fall_back(params)
        data = {
            "model": model,
            "params": params,
            "input": body["input"],
            "origin": req.origin,
            "deadline": deadline,
            "webhook": webhook,
            "events": events,
            "fallback": fallback,
        }
        job = self.engine.submit(("replicate", key), prediction_id, params.prompt, fault, data=data)
        if deadline is not None:
            job.data["deadline"] = job.created + deadline
        self._schedule_webhooks(job)
        wait = parse_wait(req.headers.get("Prefer") or "")
        if wait:
            self._hold(job, job.created + wait)
        return self._answer(job, 201)

    def _hold(self, job, until: float) -> None:
        """Keep the request open until the prediction ends or ``until`` (Prefer: wait)."""
        while not self.stopping.is_set():
            now = time.monotonic()
            ends = self._terminal(job)[0]
            if now >= ends or now >= until:
                return
            self.stopping.wait(min(until, ends) - now + 0.001)

    # --- lifecycle ------------------------------------------------------------------

    def _terminal(self, job) -> tuple[float, str]:
        """When the prediction ends and how: succeeded/failed (its outcome), aborted, canceled."""
        ends, how = job.end, "natural"
        deadline = job.data.get("deadline")
        if deadline is not None and deadline < ends:
            ends, how = deadline, "aborted" if deadline < job.start else "canceled"
        if job.cancelled_at is not None and job.cancelled_at < ends:
            ends, how = job.cancelled_at, "canceled"
        return ends, how

    def _prediction(self, job, at: float, *, output_event: bool = False) -> dict:
        model: Model = job.data["model"]
        ends, how = self._terminal(job)
        base = f"{job.data['origin']}/replicate/v1/predictions/{job.id}"
        body: dict = {
            "id": job.id,
            "model": model.name,
            "version": model.version,
            "input": job.data["input"],
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": "starting",
            "created_at": _iso(job.created_wall),
            "urls": {
                "cancel": f"{base}/cancel",
                "get": base,
                "web": f"https://replicate.com/p/{job.id}",
            },
            "source": "api",
        }
        if job.data.get("deadline") is not None:
            body["deadline"] = _iso(job.wall(job.data["deadline"]))
        started = job.start < ends and at >= job.start
        if started:
            body.update(status="processing", started_at=_iso(job.wall(job.start)))
            body["logs"] = self._start_logs(job)
        if at < ends and not output_event:
            return body
        if how == "natural":
            outcome = job.outcome(self._make)
            body.update(
                output=outcome.output, error=outcome.error, logs=body["logs"] + outcome.logs
            )
            status = outcome.status
        else:
            status = how
        if output_event:
            return body  # "output": the output is there, the prediction not yet finished
        body.update(status=status, completed_at=_iso(job.wall(ends)))
        metrics = {"total_time": round(ends - job.created, 6)}
        if started:
            metrics["predict_time"] = round(ends - job.start, 6)
        body["metrics"] = metrics
        if time.monotonic() - ends > self.config.file_ttl:
            body.update(input={}, output=None, logs="", data_removed=True)
        return body

    def _start_logs(self, job) -> str:
        logs = "Generating image...\n"
        if job.data["fallback"]:
            logs = (
                "Nano Banana Pro is at capacity. "
                f"Falling back to {FALLBACK_MODEL} (resolution: fallback)\n" + logs
            )
        return logs

    def _answer(self, job, status: int) -> Reply:
        now = time.monotonic()
        body = self._prediction(job, now)
        reply = Reply.of(status, body, body["status"])
        if job.fault == "malformed" and now >= self._terminal(job)[0]:
            return Reply(status, media.cut_json(reply.body), "malformed")
        return reply

    def _cancel(self, job) -> Reply:
        now = time.monotonic()
        if now < self._terminal(job)[0]:
            self.engine.cancel(job, now)
            self._schedule(job, now, "completed")
        return self._answer(job, 200)

    # --- what the model made --------------------------------------------------------

    def _make(self, job) -> Outcome:
        params: Params = job.data["params"]
        model: Model = job.data["model"]
        took = f"Generated in {job.end - job.start:.2f} seconds\n"
        match job.fault:
            case "prompt_block" | "image_safety":
                return Outcome("failed", error=SENSITIVE)
            case "no_image" | "text_only":
                return Outcome("failed", error=NO_IMAGE)
            case "deadline":
                return Outcome("failed", error=TRANSIENT)
            case "region":
                return Outcome("failed", error=REGION)
            case "capacity" | "saturated" if not job.data["fallback"]:
                return Outcome("failed", error=AT_CAPACITY)
        width, height = dimensions(model.sandbox, params.aspect_ratio, params.image_size)
        pil_format, mime, extension = media.FORMATS[params.output_format]
        image = render_image(params.prompt, width, height, pil_format)
        if job.fault == "truncated":
            image = media.cut(image)
        name = self.engine.store(image, extension, mime, job.end)
        return Outcome("succeeded", output=f"{job.data['origin']}/files/{name}", logs=took)

    # --- webhooks -------------------------------------------------------------------

    def _schedule_webhooks(self, job) -> None:
        if not job.data["webhook"]:
            return
        ends, how = self._terminal(job)
        if job.start < ends:
            self._schedule(job, job.start, "start")
            self._schedule(job, job.start, "logs")
        if how == "natural":
            self._schedule(job, ends, "output")
        self._schedule(job, ends, "completed")

    def _schedule(self, job, due: float, event: str) -> None:
        if not job.data["webhook"] or event not in job.data["events"]:
            return
        version = job.version
        webhook_id = f"msg_{secrets.token_hex(12)}"

        def build():
            if job.version != version:
                return None  # cancelled since: this event no longer happens
            if event == "output":
                if job.outcome(self._make).status != "succeeded":
                    return None
                body = self._prediction(job, due, output_event=True)
            else:
                body = self._prediction(job, due)
            raw = json.dumps(body).encode()
            if job.fault == "malformed" and event == "completed":
                raw = media.cut_json(raw)
            return job.data["webhook"], raw, self.sign(webhook_id, raw)

        self.engine.webhooks.schedule(due, build)

    def sign(self, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Standard Webhooks headers for ``body`` with the configured whsec_ secret."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        key = base64.b64decode(self.config.replicate_webhook_secret.removeprefix("whsec_"))
        signed = f"{webhook_id}.{stamp}.".encode() + body
        signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return {
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": stamp,
            "webhook-signature": f"v1,{signature}",
        }


def _webhook_fields(body: dict) -> tuple[str, tuple[str, ...]]:
    webhook = body.get("webhook") or ""
    if not isinstance(webhook, str) or (
        webhook and not webhook.startswith(("http://", "https://"))
    ):
        raise _Invalid([("webhook", "format", "Does not match format 'uri'")])
    events = body.get("webhook_events_filter")
    if events is None:
        return webhook, DEFAULT_EVENTS
    if not isinstance(events, list) or not all(e in EVENTS for e in events):
        listed = ", ".join(f'"{e}"' for e in EVENTS)
        description = f"webhook_events_filter must be one of the following: {listed}"
        raise _Invalid([("webhook_events_filter", "enum", description)])
    return webhook, tuple(events)


def _invalid(fields: list[tuple[str, str, str]]) -> Reply:
    detail = "".join(f"- {name}: {description}\n" for name, _, description in fields)
    invalid = [{"type": kind, "field": name, "description": d} for name, kind, d in fields]
    return problem(422, "Input validation failed", detail, "invalid", invalid_fields=invalid)


def _can_fall_back(params: Params) -> bool:
    return (
        params.allow_fallback
        and params.image_size != "4K"
        and params.aspect_ratio not in FALLBACK_REFUSES
    )


def _refusal_at_submit(fault: str | None, wait: float) -> Reply | None:
    match fault:
        case "out_of_credit":
            return problem(402, "Insufficient credit", CREDIT, fault)
        case "rate_limit" | "daily_quota":
            seconds = max(1, math.ceil(wait))
            detail = f"Request was throttled. Your rate limit resets in ~{seconds}s."
            headers = (("Retry-After", str(seconds)),)
            return problem(429, "Request was throttled", detail, fault, headers)
        case "unavailable":
            detail = "The service is temporarily unavailable. Please try again later."
            return problem(503, "Service Unavailable", detail, fault)
        case "internal":
            detail = "An internal error occurred. Please try again later."
            return problem(500, "Internal Server Error", detail, fault)
        case "timeout":
            return Reply(0, outcome=fault, hang=True)
    return None
