"""Replicate's predictions API for the official Google models (google/nano-banana-pro …).

Facts relied on (replicate.com/docs, read late 2026; github:replicate/replicate-python):

* Create ``POST {base}/models/{owner}/{name}/predictions`` (official models; a pinned
  ``owner/name:version`` goes to ``POST {base}/predictions`` with ``version``), key as
  ``Authorization: Bearer r8_…``, body ``{"input": {…}, "webhook", "webhook_events_filter"}``
  (replicate-python prediction.py ``_create_prediction_body``). The answer is a prediction:
  ``{id, model, version, status, input, output, error, logs, metrics, created_at,
  started_at, completed_at, urls: {get, cancel, …}}``.
* ``Prefer: wait=N`` holds the request up to N seconds; "If the model doesn't finish within
  the specified duration, the request will return the incomplete prediction object with
  status set to starting or processing"; "For models that produce files as output,
  Replicate will respond with the files as soon as they are all available … the output
  field will contain all file outputs but status may still be processing" (docs, Topics,
  "Create a prediction", Sync mode; replicate-python run.py says the same). So a short job
  finishes inside the call (N = 5 here: never hold a connection long) and an ``output``
  with files counts as done whatever the status says; longer ones are polled at
  ``urls.get``.
* ``Cancel-After: <duration>`` ("1m" in the docs; seconds are sent as "90s") sets a
  deadline: "Replicate sets the prediction's status to aborted if the deadline is reached
  before it starts running, and canceled if the deadline is reached while it's running.
  For public models, you're only charged for predictions with a canceled status, not for
  aborted ones" (replicate.com/changelog/2025-10-16-prediction-deadlines). Statuses are
  parsed by hand: replicate-python's ``Literal["starting", "processing", "succeeded",
  "failed", "canceled"]`` has no ``aborted``.
* Cancel ``POST urls.cancel`` answers the prediction; it cost nothing when it ends
  ``canceled``/``aborted`` without ever having started (no ``started_at``, no
  ``metrics.predict_time``).
* Output files are deleted an hour after the prediction (docs, "Output files"): they are
  downloaded at once. Inputs (replicate.com/google/nano-banana-pro/api): ``prompt``,
  ``image_input`` (up to 14; data URLs are accepted: "Files should be passed as HTTP URLs
  or data URLs"), ``aspect_ratio``, ``resolution`` (1K/2K/4K on Pro and 2),
  ``output_format``, ``safety_filter_level``, ``allow_fallback_model``. Masks have no field.
* Capacity fallback (replicate.com/changelog/2026-03-02-fallback-model-for-nano-banana-pro):
  with ``allow_fallback_model: true`` Nano Banana Pro falls back to "ByteDance Seedream 5.0
  lite" when Google is at capacity; "your logs still show a prediction to Nano Banana Pro.
  You can tell the fallback was used by checking the resolution field in your output — it
  says "fallback" instead of the actual resolution", and the fallback's price is charged.
  The output schema is a bare URI, so that field is looked for in an object output, the
  echoed input, the metrics and the logs (where a "Falling back to owner/name" names the
  model); the serving model is recorded as ``bytedance/seedream-5-lite`` (that model's id
  on Replicate, replicate.com/bytedance/seedream-5-lite) unless the logs name another.
* Errors are problem details ``{title, detail, status}`` (replicate-python exceptions.py,
  RFC 7807). 401 bad token; 402 "You have insufficient credit to run this model. Go to
  https://replicate.com/account/billing#billing to purchase credit."; 422 invalid input;
  429 ``{"detail": "Request was throttled. Your rate limit resets in ~30s."}`` (docs,
  "Rate limits"; Django REST framework's own wording "Expected available in N seconds" is
  read too), with or without ``Retry-After``. A failed prediction's ``error`` carries a
  code: "The input or output was flagged as sensitive. Please try again with different
  inputs. (E005)" is blocked; E1000 "Unknown Error" and E6716 "Timeout Starting Prediction"
  are worth a retry; E1001 (out of memory: input too large) is not (docs, Reference,
  "Error codes"). Google's own texts passed on in ``error`` are read as Gemini's provider
  reads them: "Resource has been exhausted" (capacity: transient), "User location is not
  supported" (refused), no image made (no_image).
* Webhooks follow Standard Webhooks (see :mod:`webhooks`); the prediction id is the
  body's ``id``. Usage: Replicate reports no tokens (per-image prices): ``Usage()``.

``list_models`` checks the key with ``GET {base}/account`` (documented, cheap) but cannot
list: Replicate has no list of the models a key may call (``GET /v1/models/{owner}/{name}``
is one model), so it answers with an explanation instead of a list that would mark every
route unseen.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import httpx
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from generations.failures import ErrorKind
from generations.providers.base import (
    ImageRequest,
    ImageResult,
    Pending,
    ProviderError,
    QueueProvider,
    UpstreamJob,
    Usage,
    WebhookEvent,
    WebhookRejected,
)
from generations.providers.common import (
    clean_text,
    corrupt,
    data_uri,
    decode_data_uri,
    excerpt,
    fetched,
    json_body,
    origin_fetcher,
    retry_after_header,
    same_origin,
    scrubbed,
    server_side,
    sniffed_image,
    text_of,
    transport_error,
)
from generations.providers.webhooks import verify_standard

WAIT_SECONDS = 5
FALLBACK_MODEL = "bytedance/seedream-5-lite"
RUNNING = frozenset({"starting", "processing"})
ERROR_CODE = re.compile(r"\bE(\d{3,4})\b")
BLOCK_MARKS = ("flagged as sensitive", "nsfw", "safety filter", "content policy", "e005")
NO_IMAGE_MARKS = ("did not return an image", "no image", "did not generate", "without an image")
REGION_MARKS = ("location is not supported", "not available in your country", "in your region")
CAPACITY_MARKS = (
    "rate limit",
    "resource_exhausted",
    "resource exhausted",
    "has been exhausted",
    "check quota",
    "429",
    "capacity",
    "overloaded",
    "high demand",
    "unavailable",
)
INVALID_MARKS = ("invalid", "validation", "not supported", "unsupported", "e1001")
WAIT_TEXT = re.compile(
    r"(?:resets in ~?|available in )(\d+(?:\.\d+)?)\s*(?:s\b|sec|second)", re.IGNORECASE
)
FALLING_BACK = re.compile(r"[Ff]alling back to ([\w.-]+/[\w.-]+)")
RESOLUTION_FALLBACK = re.compile(r"resolution\W{0,3}fallback", re.IGNORECASE)
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's safety filter flagged this request. Rephrasing the prompt may help."
)


class ReplicateProvider(QueueProvider):
    """One image per prediction (``base_url`` like https://api.replicate.com/v1)."""

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            return self._submit(request, webhook_url)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            response = self._call("GET", job.urls.get("get", ""), stage="poll")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "poll"
                )
            return self._answer(json_body(response), response.status_code)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def cancel(self, job: UpstreamJob) -> bool:
        try:
            response = self._call("POST", job.urls.get("cancel", ""), stage="cancel")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "cancel"
                )
            prediction = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None
        if not isinstance(prediction, dict):
            return False
        return _status(prediction) in ("canceled", "aborted") and not _started(prediction)

    key_help = gettext_lazy(
        "https://replicate.com/account/api-tokens (r8_…), base URL "
        "https://api.replicate.com/v1. For webhooks, the signing secret comes from GET "
        "/v1/webhooks/default/secret. Test connection reads the key's account (free)."
    )

    def test_connection(self) -> str:
        return str(gettext_lazy("The key works (Replicate account %(name)s).")) % {
            "name": self._account_name()
        }

    def list_models(self) -> list[str]:
        name = self._account_name()
        raise ProviderError(
            ErrorKind.PERMANENT,
            _(
                "The key works (Replicate account %(name)s), but Replicate cannot "
                "list the models a key may call."
            )
            % {"name": name},
        )

    def _account_name(self) -> str:
        try:
            response = self._call("GET", f"{self.base_url}/account", stage="account")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "account"
                )
            account = json_body(response)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None
        name = account.get("username") if isinstance(account, dict) else None
        return name or "unknown"

    @classmethod
    def verify_webhook(
        cls, headers: dict[str, str], body: bytes, *, secret: str, keys_url: str, now: float
    ) -> WebhookEvent:
        webhook_id, _stamp = verify_standard(headers, body, secret=secret, now=now)
        try:
            prediction_id = json.loads(body).get("id")
        except (ValueError, AttributeError, UnicodeDecodeError):
            prediction_id = None
        if not isinstance(prediction_id, str) or not prediction_id:
            raise WebhookRejected("the signed delivery names no prediction id")
        return WebhookEvent(delivery_id=webhook_id, upstream_id=prediction_id)

    # --- the calls ---------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}", "accept": "application/json"}

    def _call(
        self, method: str, url: str, *, stage: str, headers: dict | None = None, **kwargs
    ) -> httpx.Response:
        if not url or not same_origin(url, self.base_url):
            raise corrupt(f"refused to send the key to {url.split('?')[0]!r}", None)
        timeout = self.timeouts.as_httpx()
        if stage == "submit":  # room for Prefer: wait to run out
            timeout = httpx.Timeout(
                max(self.timeouts.read, WAIT_SECONDS + 10), connect=self.timeouts.connect
            )
        try:
            return self.client.request(
                method, url, headers={**self._headers, **(headers or {})}, timeout=timeout, **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if stage != "submit":
                err.may_have_been_billed = False
            raise err from None

    def _submit(self, request: ImageRequest, webhook_url: str | None) -> Pending | ImageResult:
        url, body = build_request(self.base_url, request)
        if webhook_url:
            body["webhook"] = webhook_url
            body["webhook_events_filter"] = ["completed"]
        headers = {"prefer": f"wait={WAIT_SECONDS}"}
        if request.deadline_seconds:
            headers["cancel-after"] = cancel_after(request.deadline_seconds)
        response = self._call("POST", url, stage="submit", headers=headers, json=body)
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        return self._answer(json_body(response), response.status_code, submitted=True)

    def _answer(
        self, prediction: Any, http_status: int, *, submitted: bool = False
    ) -> Pending | ImageResult:
        if not isinstance(prediction, dict) or not prediction.get("id"):
            raise corrupt(
                f"answer is not a prediction: {excerpt(repr(prediction), 120)}", http_status
            )
        status = _status(prediction)
        outputs = output_uris(prediction.get("output"))
        if status == "succeeded" or (status in RUNNING and outputs):
            return self._result(prediction, outputs, http_status)
        if status in RUNNING:
            urls = prediction.get("urls") if isinstance(prediction.get("urls"), dict) else {}
            kept = {k: urls[k] for k in ("get", "cancel") if isinstance(urls.get(k), str)}
            if "get" not in kept:
                raise corrupt("prediction without urls.get", http_status)
            job = UpstreamJob(str(prediction["id"]), kept)
            return Pending(job, started=status == "processing")
        if status == "failed":
            raise prediction_error(prediction, http_status)
        if status in ("canceled", "aborted"):
            started = _started(prediction)
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider cancelled the request before it finished."),
                detail=f"prediction {prediction['id']} {status}"
                + (" after it started" if started else " before it started"),
                http_status=http_status,
                may_have_been_billed=started,
            )
        raise corrupt(f"unknown prediction status {excerpt(repr(status), 60)}", http_status)

    def _result(self, prediction: dict, outputs: list[str], http_status: int) -> ImageResult:
        usage = Usage()  # Replicate reports no tokens; the route's per-image price bills
        if not outputs:
            raise ProviderError(
                ErrorKind.NO_IMAGE,
                _("The model did not produce an image. Rephrasing the prompt may help."),
                detail=f"prediction {prediction['id']} succeeded without an output file",
                http_status=http_status,
                may_have_been_billed=True,
                usage=usage,
            )
        fetch = origin_fetcher(
            self.base_url, self.client, self._headers, timeout=self.timeouts.read
        )
        images = []
        for uri in outputs:
            if uri.startswith("data:"):
                try:
                    data = decode_data_uri(uri)
                except ValueError as exc:
                    raise corrupt(str(exc), http_status, usage) from None
            else:
                data = fetched(uri, fetch, usage, http_status)
            images.append(sniffed_image(data, usage, http_status))
        extra: dict[str, Any] = {
            k: prediction[k] for k in ("version", "metrics") if prediction.get(k)
        }
        model = str(prediction.get("model") or "")
        if served_by := fallback_model(prediction):
            model = extra["served_by"] = served_by
            extra["requested_model"] = str(prediction.get("model") or "")
        return ImageResult(
            images=tuple(images),
            usage=usage,
            model_version=model,
            response_id=str(prediction["id"]),
            http_status=http_status,
            extra=extra,
        )


# --- the request --------------------------------------------------------------------


def build_request(base_url: str, request: ImageRequest) -> tuple[str, dict]:
    """The create URL and JSON body of one prediction."""
    model, _colon, version = request.upstream_model.strip().partition(":")
    body: dict[str, Any] = {"input": build_input(request)}
    if version:
        body["version"] = request.upstream_model.strip()
        return f"{base_url.rstrip('/')}/predictions", body
    owner, _slash, name = model.strip("/").partition("/")
    if not owner or not name:
        raise ProviderError(
            ErrorKind.PERMANENT,
            _("Replicate models are named owner/name, not %(model)s.")
            % {"model": repr(request.upstream_model)},
        )
    return f"{base_url.rstrip('/')}/models/{owner}/{name}/predictions", body


def build_input(request: ImageRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "prompt": request.prompt,
        "aspect_ratio": request.aspect_ratio,
        "output_format": "png",
    }
    if request.image_size is not None:
        fields["resolution"] = request.image_size
    if request.references:
        fields["image_input"] = [data_uri(r.data, r.mime_type) for r in request.references]
    if request.allow_fallback:
        fields["allow_fallback_model"] = True
    return fields


def cancel_after(seconds: float) -> str:
    return f"{max(1, math.ceil(seconds))}s"


# --- a prediction ---------------------------------------------------------------------


def _status(prediction: dict) -> str:
    return str(prediction.get("status") or "").strip().lower()


def _started(prediction: dict) -> bool:
    metrics = prediction.get("metrics") if isinstance(prediction.get("metrics"), dict) else {}
    return bool(prediction.get("started_at")) or bool(metrics.get("predict_time"))


def output_uris(output: Any) -> list[str]:
    """The file URIs of an output: one URI, a list of them, or an object holding them."""
    if isinstance(output, str):
        return [output] if output.startswith(("https://", "http://", "data:")) else []
    if isinstance(output, list):
        return [uri for item in output for uri in output_uris(item)]
    if isinstance(output, dict):
        return [uri for value in output.values() for uri in output_uris(value)]
    return []


def fallback_model(prediction: dict) -> str:
    """The model that served a prediction in Nano Banana Pro's stead ("" when it served
    itself). Replicate marks it by ``resolution: "fallback"`` (see the module docstring),
    looked for wherever it may show: the output, the echoed input, the metrics, the logs
    ("… (resolution: fallback)", or "Falling back to owner/name", which names the model)."""
    marked = any(
        isinstance(value, dict) and str(value.get("resolution", "")).lower() == "fallback"
        for value in (prediction.get(k) for k in ("output", "input", "metrics"))
    )
    logs = prediction.get("logs") if isinstance(prediction.get("logs"), str) else ""
    named = FALLING_BACK.search(logs)
    if named:
        return named.group(1)
    return FALLBACK_MODEL if marked or RESOLUTION_FALLBACK.search(logs) else ""


def prediction_error(prediction: dict, http_status: int) -> ProviderError:
    """A ``failed`` prediction, classified by its error text and code."""
    error = prediction.get("error")
    text = clean_text(error if isinstance(error, str) else json.dumps(error or ""))
    lowered = text.lower()
    code = ERROR_CODE.search(text)
    detail = f"prediction {prediction['id']} failed" + (f" ({code.group(0)})" if code else "")
    detail += f": {text or '(no error given)'}"
    billed = {"http_status": http_status, "may_have_been_billed": _started(prediction)}
    if any(mark in lowered for mark in BLOCK_MARKS):
        return ProviderError(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE), detail=detail, **billed)
    if any(mark in lowered for mark in NO_IMAGE_MARKS):
        return ProviderError(
            ErrorKind.NO_IMAGE,
            _("The model did not produce an image. Rephrasing the prompt may help."),
            detail=detail,
            **billed,
        )
    if any(mark in lowered for mark in REGION_MARKS):  # Google refusing Replicate's region
        return ProviderError(
            ErrorKind.REFUSED,
            _("The model is not available through this provider from its location."),
            detail=detail,
            **billed,
        )
    if any(mark in lowered for mark in CAPACITY_MARKS):
        return ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider is at capacity right now."),
            detail=detail,
            **billed,
        )
    if any(mark in lowered for mark in INVALID_MARKS):
        return ProviderError(
            ErrorKind.PERMANENT,
            _("The provider rejected the request: %(said)s") % {"said": text},
            detail=detail,
            **billed,
        )
    return ProviderError(
        ErrorKind.TRANSIENT, _("The provider failed to make the image."), detail=detail, **billed
    )


# --- anything but a 2xx -----------------------------------------------------------------


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None, stage: str = "submit"
) -> ProviderError:
    """Classify a problem-details answer (``stage``: submit, poll, cancel or account)."""
    problem = _problem(body)
    said = (
        clean_text(str(problem.get("detail") or problem.get("title") or ""))
        or excerpt(text_of(body), 200)
        or "(empty body)"
    )
    detail = f"HTTP {status} {clean_text(str(problem.get('title') or ''))}".rstrip() + f": {said}"
    lowered = said.lower()

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status == 402 or "insufficient credit" in lowered:
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status == 429:
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=throttle_delay(said, headers),
        )
    if status == 404:
        if stage == "submit":
            message = "The provider does not serve this model"
            return error_of(ErrorKind.MODEL_GONE, f"{message}: {said}")
        if stage == "account":
            return error_of(ErrorKind.PERMANENT, _("This provider cannot check its keys."))
        return error_of(
            ErrorKind.TRANSIENT,
            _("The provider lost track of the request."),
            may_have_been_billed=stage == "poll",
        )
    if status == 422 and any(mark in lowered for mark in BLOCK_MARKS):
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if (err := server_side(status, error_of, may_have_been_billed=stage == "submit")) is not None:
        return err
    message = "The provider rejected the request"
    if status == 413:
        message = "The request was too large for the provider (are the reference images too big?)"
    return error_of(ErrorKind.PERMANENT, f"{message}: {said}")


def throttle_delay(said: str, headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After``, else the wait Replicate's text names ("resets in ~30s")."""
    delay = retry_after_header(headers)
    if delay is not None:
        return delay
    match = WAIT_TEXT.search(said)
    return float(match.group(1)) if match else None


def _problem(body: bytes | str) -> dict:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}
