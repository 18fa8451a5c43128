"""fal.ai's queue: submit, poll the URLs fal hands back, download the images.

Facts relied on (fal.ai/docs, read late 2026, and github:fal-ai/fal
projects/fal_client/src/fal_client/client.py):

* Submit ``POST {base}/{endpoint_id}`` (``https://queue.fal.run/fal-ai/nano-banana-pro``;
  references go to the ``/edit`` endpoint) with ``Authorization: Key <key>`` and the JSON
  input; ``?fal_webhook=<url>`` asks for a webhook (fal_client ``submit``: ``urlencode
  ({"fal_webhook": url})``). The answer carries ``request_id``, ``status: IN_QUEUE``,
  ``queue_position``, ``status_url``, ``response_url``, ``cancel_url`` (and
  ``gateway_request_id``). Those URLs use only the owner and app, not the endpoint's path
  (``/edit``): "Do not build these URLs yourself" (docs, Inference API, "Model IDs and
  paths"). They are stored and used exactly as given, and the key is only ever sent to
  the origin of the configured base URL.
* Status ``GET status_url``: 202 while ``IN_QUEUE`` (with ``queue_position``) or
  ``IN_PROGRESS``, 200 once ``COMPLETED``; a failed request is ``COMPLETED`` with ``error``
  and ``error_type`` (fal_client ``Completed``), not a status of its own. The result is
  ``GET response_url``: ``{images: [{url, content_type, width, height}], description,
  seed?}``; a failed request answers it with its error status and body.
* Cancel ``PUT cancel_url``: 202 ``CANCELLATION_REQUESTED``; otherwise ``ALREADY_COMPLETED``
  or ``NOT_FOUND`` (docs, Inference API, queue/cancel). "If the request is in the queue,
  fal removes it. If the request is in progress, fal sends a cancellation signal to the
  runner. The model app decides how to stop the work." The answer is the same in both
  cases, so ``cancel`` reads the status first: only a request still ``IN_QUEUE`` counts as
  dropped before the model ran (True); one in progress may still finish and be billed
  (False, though the signal is sent). Statuses other than fal_client's three
  (``CANCELLED``, ``FAILED``) are read as a cancelled and a failed request.
* Inputs of the nano-banana endpoints (fal.ai/models/fal-ai/nano-banana-pro{,/edit}/api):
  ``prompt``, ``num_images``, ``aspect_ratio``, ``output_format``, ``resolution`` (fal writes
  Google's "512" as "0.5K"), ``image_urls`` (the edit endpoints; ``data:`` URIs are accepted,
  so references are never uploaded anywhere public). Masks have no field: ignored, as the
  Gemini provider does.
* Errors (docs, "Model Errors", "Request Error Types", "Reliability"): model errors are 422
  ``{"detail": [{loc, msg, type, url, ctx}]}`` with ``type`` ``content_policy_violation``
  (blocked, not retryable), ``no_media_generated`` (no image: one retry), ``image_too_large``,
  ``downstream_service_error`` … (permanent, or refused for a location error); the
  header ``X-Fal-Retryable`` (older pages: ``X-Fal-Needs-Retry``) says whether a retry
  can help. Infrastructure errors are
  ``{"detail": "…", "error_type": "request_timeout" | "runner_scheduling_failure" | …}``
  with ``X-Fal-Error-Type``, 5xx, and "Failed requests that return 5xx status codes are
  not billed". 401 is a bad key; 403 ``{"detail": "User is locked. Reason: Exhausted
  balance. Top up your balance at fal.ai/dashboard/billing."}`` (or "Reason: TOP_UP") is an
  account out of credit, not a bad key (github:fal-ai/fal issues #1112, #1147, #1163;
  awsl-project/maxx#843); "Reason: Admin lock" needs fal's support (key_invalid). Requests
  over the concurrency limit queue rather than fail; a 429 is still rate limited.
* Usage: fal reports no tokens; its routes are priced per image. The same-origin rule for
  image URLs is :func:`common.origin_fetcher` (fal's CDN goes through safe_fetch).

No ``list_models``: fal's queue has no list of the endpoints a key may call (the platform
model search lives on another host, api.fal.ai, and lists everything fal serves).
"""

from __future__ import annotations

import json
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
)
from generations.providers.common import (
    MAX_FETCHED_IMAGE_BYTES,
    clean_text,
    corrupt,
    data_uri,
    decode_data_uri,
    excerpt,
    fetched,
    json_body,
    loads_or_none,
    origin_fetcher,
    retry_after_header,
    same_origin,
    scrubbed,
    sniffed_image,
    text_of,
    transient_message,
    transport_error,
)
from generations.providers.webhooks import FAL_JWKS_URL, verify_fal

RESOLUTIONS = {"512": "0.5K", "1K": "1K", "2K": "2K", "4K": "4K"}
URL_KEYS = {"status": "status_url", "response": "response_url", "cancel": "cancel_url"}
BLOCK_TYPES = frozenset({"content_policy_violation"})
NO_CREDIT_MARKS = ("exhausted balance", "top_up", "top up", "insufficient balance")
TRANSIENT_ERROR_TYPES = frozenset(
    {
        "request_timeout",
        "startup_timeout",
        "runner_scheduling_failure",
        "runner_connection_timeout",
        "runner_disconnected",
        "runner_connection_refused",
        "runner_connection_error",
        "runner_incomplete_response",
        "runner_server_error",
        "internal_error",
    }
)
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's content checker rejected this request. Rephrasing the prompt may help."
)


class FalProvider(QueueProvider):
    """One image per request through fal's queue (``base_url`` like https://queue.fal.run)."""

    key_help = gettext_lazy(
        "https://fal.ai/dashboard/keys (a key looks like id:secret), base URL "
        "https://queue.fal.run. fal runs 2–40 requests at once per account depending on "
        "its plan: set max concurrency to yours. Only successful images are billed."
    )

    def test_connection(self) -> str:
        return str(
            gettext_lazy(
                "fal.ai has no free call that checks a key: generate one image through this "
                "provider to try it (a failed request is not billed)."
            )
        )

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            return self._submit(request, webhook_url)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            return self._poll(job)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def cancel(self, job: UpstreamJob) -> bool:
        try:
            return self._cancel(job)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    @classmethod
    def verify_webhook(
        cls, headers: dict[str, str], body: bytes, *, secret: str, keys_url: str, now: float
    ) -> WebhookEvent:
        request_id, stamp = verify_fal(headers, body, keys_url=keys_url or FAL_JWKS_URL, now=now)
        return WebhookEvent(delivery_id=f"{request_id}:{stamp}", upstream_id=request_id)

    # --- the calls ---------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Key {self.api_key}", "accept": "application/json"}

    def _call(self, method: str, url: str, *, stage: str, **kwargs) -> httpx.Response:
        if not same_origin(url, self.base_url):
            raise corrupt(f"refused to send the key to {url.split('?')[0]!r}", None)
        try:
            return self.client.request(
                method, url, headers=self._headers, timeout=self.timeouts.as_httpx(), **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if stage != "submit":
                err.may_have_been_billed = False  # a GET or PUT costs nothing by itself
            raise err from None

    def _submit(self, request: ImageRequest, webhook_url: str | None) -> Pending:
        params = {"fal_webhook": webhook_url} if webhook_url else None
        response = self._call(
            "POST",
            endpoint_url(self.base_url, request),
            stage="submit",
            json=build_input(request),
            params=params,
        )
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        body = json_body(response)
        if not isinstance(body, dict) or not body.get("request_id"):
            raise _untracked(f"submit answer has no request_id: {excerpt(repr(body), 120)}")
        urls = {name: body.get(key) for name, key in URL_KEYS.items()}
        if not all(isinstance(u, str) and u for u in urls.values()):
            raise _untracked(f"submit answer lacks {sorted(k for k, u in urls.items() if not u)}")
        job = UpstreamJob(str(body["request_id"]), urls)
        return Pending(job, started=False, position=_position(body))

    def _poll(self, job: UpstreamJob) -> Pending | ImageResult:
        response = self._call("GET", job.urls.get("status", ""), stage="status")
        if response.status_code not in (200, 202):
            raise classify_error(response.status_code, response.content, response.headers, "poll")
        status = json_body(response)
        state = str(status.get("status") or "") if isinstance(status, dict) else ""
        if state == "IN_QUEUE":
            return Pending(job, started=False, position=_position(status))
        if state == "IN_PROGRESS":
            return Pending(job, started=True)
        if state in ("CANCELLED", "CANCELED"):  # not one of fal_client's three statuses
            raise ProviderError(
                ErrorKind.TRANSIENT,
                _("The provider cancelled the request before it ran."),
                detail=f"fal request {job.id} {state}",
                http_status=response.status_code,
            )
        if state == "FAILED":
            status = {**status, "error_type": status.get("error_type") or "internal_error"}
        elif state != "COMPLETED":
            raise corrupt(f"unknown fal status {excerpt(repr(state), 60)}", response.status_code)
        result = self._call("GET", job.urls.get("response", ""), stage="result")
        if not result.is_success:
            raise classify_error(result.status_code, result.content, result.headers, "result")
        if status.get("error") or status.get("error_type"):
            raise completed_error(status, result.content)
        return self._result(job, json_body(result), result.status_code)

    def _cancel(self, job: UpstreamJob) -> bool:
        # fal answers CANCELLATION_REQUESTED both to a queued request (removed: nothing
        # made, nothing billed) and to one in progress (only signalled: the model may still
        # finish, and bill). The status first tells the two apart.
        running = self._state_of(job) not in ("IN_QUEUE", "")
        response = self._call("PUT", job.urls.get("cancel", ""), stage="cancel")
        try:
            state = str(json.loads(response.content).get("status") or "")
        except (ValueError, AttributeError, UnicodeDecodeError):
            state = ""
        if state in ("CANCELLATION_REQUESTED", "OK") and response.is_success:
            return not running
        if state in ("ALREADY_COMPLETED", "NOT_FOUND"):
            return False
        if response.is_success:
            raise corrupt(f"unexpected cancel answer {state!r}", response.status_code)
        raise classify_error(response.status_code, response.content, response.headers, "cancel")

    def _state_of(self, job: UpstreamJob) -> str:
        """The request's status, "" when fal cannot say (the cancel decides alone then)."""
        try:
            response = self._call("GET", job.urls.get("status", ""), stage="status")
            return str(json.loads(response.content).get("status") or "")
        except (ProviderError, ValueError, AttributeError, UnicodeDecodeError, KeyError):
            return ""

    def _result(self, job: UpstreamJob, body: Any, http_status: int) -> ImageResult:
        usage = Usage()  # fal reports no tokens; the route's per-image price bills
        if not isinstance(body, dict):
            raise corrupt(f"result is {type(body).__name__}, not an object", http_status, usage)
        items = [i for i in body.get("images") or [] if isinstance(i, dict)]
        if not items:
            raise ProviderError(
                ErrorKind.NO_IMAGE,
                _("The model did not produce an image. Rephrasing the prompt may help."),
                detail=f"fal result without images (keys: {sorted(body)[:8]})",
                http_status=http_status,
                may_have_been_billed=True,
                usage=usage,
            )
        fetch = origin_fetcher(
            self.base_url,
            self.client,
            self._headers,
            timeout=self.timeouts.read,
            max_bytes=MAX_FETCHED_IMAGE_BYTES,
        )
        images = tuple(_image(item, fetch, http_status) for item in items)
        extra = {k: body[k] for k in ("seed", "description", "served_by") if k in body}
        if isinstance(body.get("timings"), dict):
            extra["timings"] = body["timings"]
        return ImageResult(
            images=images,
            usage=usage,
            text=str(body.get("description") or ""),
            model_version=str(body.get("served_by") or ""),
            response_id=job.id,
            http_status=http_status,
            extra=extra,
        )


# --- the request --------------------------------------------------------------------


def endpoint_url(base_url: str, request: ImageRequest) -> str:
    endpoint = request.upstream_model.strip("/")
    if request.references and not endpoint.endswith("/edit"):
        endpoint += "/edit"
    return f"{base_url.rstrip('/')}/{endpoint}"


def build_input(request: ImageRequest) -> dict:
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "num_images": 1,
        "aspect_ratio": request.aspect_ratio,
        "output_format": "png",
    }
    if request.image_size is not None:
        body["resolution"] = RESOLUTIONS.get(request.image_size, request.image_size)
    if request.references:
        body["image_urls"] = [data_uri(r.data, r.mime_type) for r in request.references]
    return body


def _position(body: Any) -> int | None:
    value = body.get("queue_position") if isinstance(body, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _untracked(detail: str) -> ProviderError:
    # fal took the request (and may run and bill it) but we cannot follow it.
    return corrupt(detail, 200)


def _image(item: dict, fetch, http_status: int):
    url = str(item.get("url") or "")
    if url.startswith("data:"):
        try:
            data = decode_data_uri(url)
        except ValueError as exc:
            raise corrupt(str(exc), http_status, Usage()) from None
    elif url:
        data = fetched(url, fetch, Usage(), http_status)
    else:
        raise corrupt(f"image entry without url: {sorted(item)}", http_status, Usage())
    return sniffed_image(data, Usage(), http_status)


# --- failures -----------------------------------------------------------------------


def completed_error(status: dict, result_body: bytes) -> ProviderError:
    """A request fal reports as ``COMPLETED`` with ``error`` / ``error_type``."""
    error_type = str(status.get("error_type") or "")
    error = clean_text(str(status.get("error") or ""))
    detail = f"COMPLETED with error_type={error_type or 'none'}: {error or '(no message)'}"
    blocked = error_type in BLOCK_TYPES or any(
        e.get("type") in BLOCK_TYPES for e in _detail_list(result_body)
    )
    if blocked:
        return ProviderError(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE), detail=detail)
    if error_type in TRANSIENT_ERROR_TYPES or not error_type:
        return ProviderError(
            ErrorKind.TRANSIENT, _("The provider failed to make the image."), detail=detail
        )
    message = f"The provider rejected the request: {error}" if error else "The request failed."
    return ProviderError(ErrorKind.PERMANENT, message, detail=detail)


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None, stage: str = "submit"
) -> ProviderError:
    """Classify a fal error answer (``stage``: submit, poll, result or cancel)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    data = loads_or_none(body)
    items = _detail_list(body)
    error_type = str(
        (data.get("error_type") if isinstance(data, dict) else None)
        or headers.get("x-fal-error-type")
        or ""
    )
    said = _said(data, items) or excerpt(text_of(body), 200) or "(empty body)"
    types = [str(i.get("type") or "") for i in items]
    detail = f"HTTP {status} {error_type or ','.join(t for t in types if t)}".rstrip() + f": {said}"
    retryable = (headers.get("x-fal-retryable") or headers.get("x-fal-needs-retry") or "").lower()

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    lowered = said.lower()
    if BLOCK_TYPES & set(types) or error_type in BLOCK_TYPES:
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if status == 402 or (status == 403 and any(m in lowered for m in NO_CREDIT_MARKS)):
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status == 403 and "locked" in lowered:
        return error_of(ErrorKind.KEY_INVALID, _("The provider has locked this account."))
    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status == 429:
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=retry_after_header(headers),
        )
    if status == 404:
        if stage == "submit":
            message = "The provider does not serve this model"
            return error_of(ErrorKind.MODEL_GONE, f"{message}: {clean_text(said)}")
        # The request id is unknown to fal (expired or lost): nothing left to poll.
        return error_of(
            ErrorKind.TRANSIENT,
            _("The provider lost track of the request."),
            may_have_been_billed=True,
        )
    if "no_media_generated" in types:
        return error_of(
            ErrorKind.NO_IMAGE,
            _("The model did not produce an image. Rephrasing the prompt may help."),
            may_have_been_billed=True,
        )
    if any(m in lowered for m in ("location is not supported", "not available in your country")):
        return error_of(
            ErrorKind.REFUSED, _("The model is not available through this provider's location.")
        )
    if status >= 500 or retryable == "true" or error_type in TRANSIENT_ERROR_TYPES:
        message = transient_message(status)
        if error_type in ("request_timeout", "startup_timeout"):
            message = "The provider timed out making the image."
        return error_of(ErrorKind.TRANSIENT, message)  # 5xx: not billed
    message = "The provider rejected the request"
    if "image_too_large" in types or status == 413:
        message = "The provider refused an image as too large"
    return error_of(ErrorKind.PERMANENT, f"{message}: {clean_text(said)}")


def _detail_list(body: bytes | str) -> list[dict]:
    data = loads_or_none(body)
    if isinstance(data, list):  # some endpoints answer the list itself
        return [i for i in data if isinstance(i, dict)]
    detail = data.get("detail") if isinstance(data, dict) else None
    return [i for i in detail if isinstance(i, dict)] if isinstance(detail, list) else []


def _said(data: Any, items: list[dict]) -> str:
    if items:
        return "; ".join(
            clean_text(f"{i.get('msg') or i.get('type') or ''}") for i in items[:3]
        ).strip("; ")
    if isinstance(data, dict):
        for key in ("detail", "error", "message"):
            if isinstance(data.get(key), str):
                return clean_text(data[key])
    return ""
