"""Higgsfield's platform API: submit to a model's endpoint, poll the request, download.

Facts relied on (docs.higgsfield.ai, read late 2026: /docs/authentication, /docs/concepts/
requests, /docs/concepts/idempotency, /docs/concepts/errors, /docs/concepts/rate-limits,
/docs/enterprise/capacity, /docs/api-reference/headers, /how-to/webhooks; and the official
SDKs github:higgsfield-ai/higgsfield-client (src/higgsfield_client/http/client.py, utils.py,
types_.py) and github:higgsfield-ai/higgsfield-js (src/v2/client.ts, types.ts, errors.ts)):

* Base URL ``https://platform.higgsfield.ai``; the key is ``Authorization: Key
  {KEY_ID}:{KEY_SECRET}`` (the SDKs' ``HF_KEY="id:secret"``). Submit ``POST
  {base}/{model_id}`` (``higgsfield-ai/soul/standard``, ``bytedance/seedream/v4/text-to-
  image`` …) with the model's JSON input; ``?hf_webhook=<url>`` asks for a webhook. The
  answer is ``{status: "queued", request_id, status_url, cancel_url}``.
* ``GET /requests/{id}/status`` answers the same shape with the current ``status``; the
  finished one carries ``images: [{url}]`` (or ``video``), a failed one ``error``. The
  Python SDK reads the result from the status URL itself. Statuses ``queued``,
  ``in_progress``, ``completed``, ``failed``, ``nsfw``, ``canceled``; "Failed and NSFW
  requests are not charged; any reserved credits are refunded"; only completed requests
  are billed (FAQ). Output files are kept at least 7 days.
* ``POST /requests/{id}/cancel``: "202 Accepted" while ``queued``, "Otherwise, response
  status code will be 400 Bad Request" (the model started: no longer cancellable).
* ``Idempotency-Key`` on a generation request (1–255 visible ASCII): "If the response is
  lost, repeat the same request with the same key. Higgsfield returns the original
  request_id without creating or charging for another generation"; "Reuse the key only
  when the endpoint, JSON body, and webhook are unchanged" (else 422); "A completed,
  failed, NSFW, or canceled request keeps its identity. Retrying does not restart it";
  a request rejected before acceptance does not consume the key. See ``idempotency_key``
  below for how a key is made here.
* Errors are FastAPI's ``{"detail": str | [{loc, msg, type}]}``: 400 invalid input or
  (older accounts) "Maximum number of concurrent requests (4) has been reached"; 401
  "Invalid credentials"; 403 insufficient credits (the JS SDK's NotEnoughCreditsError);
  404 request or model not found for this account; 422 validation (and an idempotency
  key reused with other parameters); 423 model temporarily blocked; 5xx. Above the
  account's concurrency requests queue; past the queue limit: 429 with ``"code":
  "account_queue_full"``, the queue ``limit`` and ``Retry-After`` ("nothing is created or
  charged"). Every answer carries ``X-Correlation-ID`` (kept in the detail).
* Model input schemas differ per model and are "being redesigned": the field names come
  from the admin (``Provider.options``, see :func:`read_options`). Image inputs are
  written ``{"type": "image_url", "image_url": url}`` by Higgsfield's own models
  (``input_images``, ``image_reference``); whether a model takes ``data:`` URIs is not
  documented — references are sent as data URIs (no third-party upload of users' images,
  and a retried body stays byte-identical for the idempotency key).

No account or balance endpoint is documented: ``test_connection`` asks for the status of
a request id that cannot exist (free): 404 means the key was accepted, 401 that it was not.
Usage: Higgsfield reports no tokens or cost; routes are priced per image by the admin.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

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
)
from generations.providers.common import (
    clean_text,
    corrupt,
    data_uri,
    excerpt,
    images_at,
    json_body,
    loads_or_none,
    origin_fetcher,
    retry_after_header,
    same_origin,
    scrubbed,
    server_side,
    text_of,
    transport_error,
)

# What nanoweb can fill in, and the model field each goes to unless the admin says else.
FIELDS = ("prompt", "aspect_ratio", "resolution", "image_urls")
DEFAULT_FIELDS = {"prompt": "prompt", "aspect_ratio": "aspect_ratio"}
IMAGE_FORMATS = ("image_url", "url")  # [{type: image_url, image_url}] or [url, …]
NO_REQUEST = "00000000-0000-0000-0000-000000000000"  # test_connection's id that cannot exist
RUNNING = {"queued": False, "in_progress": True}
CONCURRENCY_MARKS = ("concurrent requests", "concurrency")


class HiggsfieldProvider(QueueProvider):
    """One image per request (``base_url`` like https://platform.higgsfield.ai); the route's
    upstream model is the Higgsfield model id, ``options`` maps the fields."""

    key_help = gettext_lazy(
        "Create an API key in Higgsfield Cloud (cloud.higgsfield.ai, API keys): it comes as "
        "a key ID and a secret; enter both as KEY_ID:KEY_SECRET. Options (JSON) name the "
        'model\'s fields, e.g. {"fields": {"prompt": "prompt", "aspect_ratio": '
        '"aspect_ratio", "resolution": "resolution", "image_urls": "input_images"}}, '
        'optionally "image_format" ("image_url" objects or plain "url" strings), '
        '"resolutions" (our 1K/2K/4K to the model\'s values) and "extra" (fixed fields). '
        "Limits are per account and model (concurrency, then a queue; shown in the "
        "dashboard); failed and NSFW requests are refunded."
    )

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            return self._submit(request, webhook_url)
        except ProviderError as err:
            raise self._scrubbed(err) from None

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            response = self._call("GET", self._url(job, "status"), stage="poll")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "poll"
                )
            return self._answer(json_body(response), response.status_code)
        except ProviderError as err:
            raise self._scrubbed(err) from None

    def cancel(self, job: UpstreamJob) -> bool:
        try:
            response = self._call("POST", self._url(job, "cancel"), stage="cancel")
        except ProviderError as err:
            raise self._scrubbed(err) from None
        if response.status_code in (200, 202):
            return True
        if (
            response.status_code == 400
        ):  # "once processing begins, cancellation is no longer possible"
            return False
        raise self._scrubbed(
            classify_error(response.status_code, response.content, response.headers, "cancel")
        )

    def test_connection(self) -> str:
        try:
            read_options(self.options)
            url = f"{self.base_url}/requests/{NO_REQUEST}/status"
            response = self._call("GET", url, stage="check")
            if response.status_code == 404:
                return _(
                    "The key works (Higgsfield has no free account call: it was checked by "
                    "asking for a request that does not exist, which costs nothing)."
                )
            if response.is_success:
                return _("The key works.")
            raise classify_error(response.status_code, response.content, response.headers, "check")
        except ProviderError as err:
            raise self._scrubbed(err) from None

    # --- the calls ---------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Key {self.api_key}", "accept": "application/json"}

    def _scrubbed(self, err: ProviderError) -> ProviderError:
        # The key is id:secret; a message quoting only the secret is scrubbed as well.
        return scrubbed(scrubbed(err, self.api_key), self.api_key.partition(":")[2])

    def _url(self, job: UpstreamJob, which: str) -> str:
        return job.urls.get(which) or f"{self.base_url}/requests/{quote(job.id)}/{which}"

    def _call(
        self, method: str, url: str, *, stage: str, headers: dict | None = None, **kwargs
    ) -> httpx.Response:
        if not same_origin(url, self.base_url):
            raise corrupt(f"refused to send the key to {url.split('?')[0]!r}", None)
        if ":" not in self.api_key.strip(":"):
            raise ProviderError(
                ErrorKind.KEY_INVALID,
                _("Higgsfield keys are entered as KEY_ID:KEY_SECRET."),
                detail="the stored key has no ':' between its id and secret",
            )
        try:
            return self.client.request(
                method,
                url,
                headers={**self._headers, **(headers or {})},
                timeout=self.timeouts.as_httpx(),
                **kwargs,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if stage != "submit":
                err.may_have_been_billed = False  # a GET or cancel costs nothing by itself
            raise err from None

    def _submit(self, request: ImageRequest, webhook_url: str | None) -> Pending:
        options = read_options(self.options)
        url = f"{self.base_url}/{request.upstream_model.strip().strip('/')}"
        body = build_input(request, options)
        params = {"hf_webhook": webhook_url} if webhook_url else None
        headers = {"idempotency-key": idempotency_key(request, url, body, webhook_url)}
        try:
            response = self._call(
                "POST", url, stage="submit", headers=headers, json=body, params=params
            )
        except ProviderError as err:
            if not err.may_have_been_billed:
                raise
            # The body went out and the answer was lost: the documented recovery is the
            # same request with the same key, which returns the original request if there
            # was one and creates it once if there was not.
            response = self._call(
                "POST", url, stage="submit", headers=headers, json=body, params=params
            )
        if not response.is_success:
            raise classify_error(response.status_code, response.content, response.headers)
        answer = self._answer(json_body(response), response.status_code, submitted=True)
        if not isinstance(answer, Pending):
            raise _untracked("a submit answered with a finished request")
        return answer

    def _answer(
        self, body: Any, http_status: int, *, submitted: bool = False
    ) -> Pending | ImageResult:
        if not isinstance(body, dict) or not body.get("request_id"):
            detail = f"answer has no request_id: {excerpt(repr(body), 120)}"
            raise _untracked(detail) if submitted else corrupt(detail, http_status)
        request_id = str(body["request_id"])
        status = str(body.get("status") or "").strip().lower()
        if status in RUNNING:
            urls = {k: body[f"{k}_url"] for k in ("status", "cancel") if _is_url(body, k)}
            return Pending(UpstreamJob(request_id, urls), started=RUNNING[status])
        if status == "completed":
            return self._result(request_id, body, http_status)
        raise request_error(request_id, status, body, http_status)

    def _result(self, request_id: str, body: dict, http_status: int) -> ImageResult:
        usage = Usage()  # Higgsfield reports no tokens; the route's per-image price bills
        urls = [i.get("url") for i in body.get("images") or [] if isinstance(i, dict)]
        urls = [u for u in urls if isinstance(u, str) and u]
        fetch = origin_fetcher(
            self.base_url, self.client, self._headers, timeout=self.timeouts.read
        )
        images = images_at(
            urls,
            fetch,
            usage,
            http_status,
            none_detail=f"request {request_id} completed without images (keys: {sorted(body)[:8]})",
        )
        return ImageResult(
            images=images, usage=usage, response_id=request_id, http_status=http_status
        )


# --- the admin's options ----------------------------------------------------------


def read_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The checked options: ``fields`` (our name → the model's field), ``image_format``,
    ``resolutions`` (our size → the model's value) and ``extra`` (fixed fields). A wrong
    setting is the route's fault, not the request's: REFUSED (fail over, tell admins)."""
    unknown = set(options) - {"fields", "image_format", "resolutions", "extra"}
    fields = options.get("fields", DEFAULT_FIELDS)
    image_format = options.get("image_format", IMAGE_FORMATS[0])
    resolutions = options.get("resolutions", {})
    extra = options.get("extra", {})
    problem = ""
    if unknown:
        problem = _("unknown settings %(names)s") % {"names": ", ".join(sorted(unknown))}
    elif not isinstance(fields, dict) or not all(
        isinstance(v, str) and v.strip() for v in fields.values()
    ):
        problem = _('"fields" must map our names to the model\'s field names (text)')
    elif set(fields) - set(FIELDS):
        problem = _('"fields" takes only %(allowed)s, not %(names)s') % {
            "allowed": ", ".join(FIELDS),
            "names": ", ".join(sorted(set(fields) - set(FIELDS))),
        }
    elif "prompt" not in fields:
        problem = _('"fields" must say which field takes the prompt')
    elif len(set(fields.values())) < len(fields):
        problem = _('"fields" sends two of ours to the same model field')
    elif image_format not in IMAGE_FORMATS:
        problem = _('"image_format" is "image_url" or "url"')
    elif not isinstance(resolutions, dict) or not all(
        isinstance(v, str) for v in resolutions.values()
    ):
        problem = _('"resolutions" must map sizes such as 1K to the model\'s values (text)')
    elif not isinstance(extra, dict) or set(extra) & set(fields.values()):
        problem = _('"extra" must be an object of fixed fields not named in "fields"')
    if problem:
        raise ProviderError(
            ErrorKind.REFUSED,
            _("This Higgsfield provider's options are wrong: %(problem)s.") % {"problem": problem},
            detail=f"options: {excerpt(json.dumps(options, default=str), 200)}",
        )
    return {
        "fields": dict(fields),
        "image_format": image_format,
        "resolutions": dict(resolutions),
        "extra": dict(extra),
    }


# --- the request --------------------------------------------------------------------


def build_input(request: ImageRequest, options: dict[str, Any]) -> dict[str, Any]:
    """The model's JSON input, named as the admin mapped it."""
    fields = options["fields"]
    body: dict[str, Any] = dict(options["extra"])
    body[fields["prompt"]] = request.prompt
    if "aspect_ratio" in fields:
        body[fields["aspect_ratio"]] = request.aspect_ratio
    if request.image_size is not None and "resolution" in fields:
        size = request.image_size
        body[fields["resolution"]] = options["resolutions"].get(size, size)
    if request.references:
        if "image_urls" not in fields:
            raise ProviderError(
                ErrorKind.REFUSED,
                _("This Higgsfield route takes no reference images."),
                detail='options.fields has no "image_urls"',
            )
        uris = [data_uri(r.data, r.mime_type) for r in request.references]
        if options["image_format"] == "image_url":
            body[fields["image_urls"]] = [{"type": "image_url", "image_url": u} for u in uris]
        else:
            body[fields["image_urls"]] = uris
    return body


def idempotency_key(request: ImageRequest, url: str, body: dict, webhook_url: str | None) -> str:
    """``{seed}-{fingerprint}``: the same key only for the same generation intent sent
    with the same endpoint, body and webhook.

    The seed names the intent. It must not come from the request's content alone: two
    jobs with the same prompt (or the n images of one job) would collapse into one paid
    request, and a job retried after a ``failed`` answer would get that failure back
    forever ("retrying does not restart it"). The engine is to give each attempt a seed
    that stays the same while an attempt's submit was ambiguous (see the report for the
    proposed ``ImageRequest.idempotency_key``); until it does, each ``submit`` draws a
    random one, which covers the immediate resend in ``_submit`` and never merges two
    jobs. The fingerprint keeps a key from being reused with another body (Higgsfield
    answers 422 to that): a changed body is a new request by design."""
    seed = request.idempotency_key or uuid.uuid4().hex
    canonical = json.dumps(
        {"url": url, "body": body, "webhook": webhook_url or ""},
        sort_keys=True,
        separators=(",", ":"),
    )
    return f"{seed}-{hashlib.sha256(canonical.encode()).hexdigest()[:16]}"[:255]


def _is_url(body: dict, which: str) -> bool:
    value = body.get(f"{which}_url")
    return isinstance(value, str) and value.startswith(("https://", "http://"))


def _untracked(detail: str) -> ProviderError:
    # Higgsfield took the request (and may run and bill it) but we cannot follow it.
    return corrupt(detail, 200)


# --- failures -----------------------------------------------------------------------


def request_error(request_id: str, status: str, body: dict, http_status: int) -> ProviderError:
    """A request that ended without images: failed, nsfw or canceled (none billed)."""
    said = clean_text(str(body.get("error") or ""))
    detail = f"request {request_id} {status or '(no status)'}" + (f": {said}" if said else "")
    if status == "nsfw":
        return ProviderError(
            ErrorKind.BLOCKED,
            _("The provider's content moderation rejected this request. Rephrasing it may help."),
            detail=detail,
            http_status=http_status,
        )
    if status == "failed":
        return ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider failed to make the image."),
            detail=detail,
            http_status=http_status,
        )
    if status in ("canceled", "cancelled"):
        return ProviderError(
            ErrorKind.TRANSIENT,
            _("The provider cancelled the request before it ran."),
            detail=detail,
            http_status=http_status,
        )
    return corrupt(f"unknown Higgsfield status {excerpt(repr(status), 60)}", http_status)


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None, stage: str = "submit"
) -> ProviderError:
    """Classify an error answer (``stage``: submit, poll, cancel or check)."""
    data = loads_or_none(body)
    code = str(data.get("code") or "") if isinstance(data, dict) else ""
    said = _said(data) or excerpt(text_of(body), 200) or "(empty body)"
    correlation = next(
        (v for k, v in (headers or {}).items() if k.lower() == "x-correlation-id"), ""
    )
    detail = f"HTTP {status} {code}".rstrip() + f": {said}"
    if correlation:
        detail += f" (X-Correlation-ID {correlation})"
    lowered = said.lower()

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status == 401:
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status in (402, 403):  # Higgsfield documents 403 as "Insufficient credits" only
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status == 429 or (status == 400 and any(m in lowered for m in CONCURRENCY_MARKS)):
        message = _("The provider is receiving too many requests right now.")
        if code == "account_queue_full":
            message = _("The provider account's queue is full right now.")
        return error_of(ErrorKind.RATE_LIMITED, message, retry_after=retry_after_header(headers))
    if status == 404:
        if stage == "submit":
            return error_of(
                ErrorKind.MODEL_GONE,
                _("The provider does not serve this model: %(reason)s") % {"reason": said},
            )
        if stage == "check":
            return error_of(ErrorKind.PERMANENT, _("The provider could not check the key."))
        return error_of(
            ErrorKind.TRANSIENT,
            _("The provider lost track of the request."),
            may_have_been_billed=stage == "poll",
        )
    if status == 423:
        return error_of(ErrorKind.TRANSIENT, _("The provider has blocked this model for now."))
    if (err := server_side(status, error_of)) is not None:
        return err
    message = _("The provider rejected the request: %(reason)s")
    if status == 413:
        message = _("The request was too large for the provider: %(reason)s")
    return error_of(ErrorKind.PERMANENT, message % {"reason": said})


def _said(data: Any) -> str:
    """FastAPI's ``detail``: a sentence, or a list of ``{loc, msg}`` items."""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return clean_text(detail)
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
                parts.append(f"{where}: {item.get('msg') or item.get('type') or ''}".strip(": "))
        return clean_text("; ".join(parts))
    if isinstance(data, dict):
        for key in ("message", "error"):
            if isinstance(data.get(key), str):
                return clean_text(data[key])
    return ""
