"""The Freepik API (also served as Magnific) for its Nano Banana endpoints: tasks to poll.

Facts relied on (read late 2026):

* Create ``POST {base}/v1/ai/{endpoint}`` with the key in ``x-freepik-api-key`` (on
  api.magnific.com: ``x-magnific-api-key``) → ``{"data": {"task_id", "status":
  "CREATED", "generated": []}}``; poll ``GET {base}/v1/ai/{endpoint}/{task_id}`` → the
  same shape, ``generated`` a list of image URLs once ``COMPLETED``. Statuses CREATED,
  IN_PROGRESS, COMPLETED, FAILED (docs.freepik.com/api-reference/text-to-image/google/
  post-gemini-2-5-flash-image-preview; the task-status capability of
  github:api-evangelist/freepik; shared/CHANNELS.md). ``base`` is
  ``https://api.freepik.com`` (or ``https://api.magnific.com``).
* Endpoints (the route's upstream model id is the path after ``/v1/ai/``):
  ``gemini-2-5-flash-image-preview`` (Nano Banana: ``prompt``, ``reference_images`` as up
  to 3 Base64 strings or URLs, ``webhook_url``; no aspect ratio or resolution field),
  ``text-to-image/nano-banana-pro`` (``aspect_ratio``, ``resolution`` 1K/2K/4K,
  ``reference_images`` as ``{"image": <Base64 or URL>, "mime_type"}`` objects, up to 14),
  ``text-to-image/nano-banana-pro-flash`` (Nano Banana 2: the Pro fields plus
  ``use_google_search_tool``) — the fields as public clients of these endpoints send them.
  :data:`ENDPOINTS` holds these documented shapes; an endpoint not listed is sent the Pro
  shape. A ratio the Nano Banana endpoint cannot take (anything but 1:1) is refused, not
  sent to come back square.
* Webhooks: ``webhook_url`` gets "asynchronous notifications whenever the task changes
  status", the body being the task as the GET endpoint answers it. Deliveries carry
  ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``; the signed content is
  ``{webhook-id}.{webhook-timestamp}.{raw body}``, HMAC-SHA256 keyed with the secret
  "encoded as bytes" (the secret as it is shown, not base64-decoded), base64-encoded; the
  header is a space-separated list of ``v<n>,<signature>`` for key rotation, any of which
  may match (docs.freepik.com/webhooks, "Webhook security"). The secret comes from the
  developer dashboard. Timestamps more than five minutes away are refused, as for
  Standard Webhooks.
* Errors are ``{"message": …}`` (with ``invalid_params`` on a 400). 401 is a bad key;
  Freepik's WAF answers 403 "Penalty Box" to default client User-Agents
  (shared/CHANNELS.md): that is a transient refusal, not a broken key, and requests carry
  a descriptive User-Agent (``options["user_agent"]`` to change it). Limits and prices
  were not found documented: set ``rpm``/``max_concurrency`` and per-image Price rows from
  your plan's pages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
from generations.providers.webhooks import check_timestamp, lowered

USER_AGENT = "nanoweb/1.0 (self-hosted image gateway)"
RUNNING = frozenset({"CREATED", "IN_PROGRESS"})
NO_CREDIT_MARKS = ("credit", "balance", "payment required", "free trial", "upgrade your plan")
DAILY_MARKS = ("daily", "per day", "day limit")
BLOCK_MARKS = ("nsfw", "safety", "content policy", "moderation", "inappropriate", "blocked")


@dataclass(frozen=True)
class Endpoint:
    ratios: bool = True  # takes aspect_ratio
    resolutions: tuple[str, ...] = ("1K", "2K", "4K")
    references_as_objects: bool = True  # {"image", "mime_type"} rather than bare strings
    max_references: int = 14
    grounding: bool = False


ENDPOINTS = {
    "gemini-2-5-flash-image-preview": Endpoint(
        ratios=False, resolutions=(), references_as_objects=False, max_references=3
    ),
    "text-to-image/nano-banana-pro": Endpoint(),
    "text-to-image/nano-banana-pro-flash": Endpoint(grounding=True),
}
BLOCKED_MESSAGE = gettext_lazy(
    "The provider's safety filter flagged this request. Rephrasing the prompt may help."
)


class FreepikProvider(QueueProvider):
    """One task of one image (``base_url`` like https://api.freepik.com)."""

    key_help = gettext_lazy(
        "An API key from the Freepik developer dashboard (freepik.com/developers/dashboard/"
        "api-key; on Magnific, its own dashboard), sent as x-freepik-api-key. Base URL: "
        "https://api.freepik.com (or https://api.magnific.com). Routes name the endpoint "
        "after /v1/ai/: gemini-2-5-flash-image-preview, text-to-image/nano-banana-pro, "
        "text-to-image/nano-banana-pro-flash. For webhooks, paste the webhook secret from "
        "the same dashboard. Rate limits depend on the plan and are not published: set RPM "
        'and Max concurrency from your plan. Options: "user_agent".'
    )

    def submit(
        self, request: ImageRequest, *, webhook_url: str | None = None
    ) -> Pending | ImageResult:
        try:
            endpoint = request.upstream_model.strip().strip("/")
            body = build_request(request, webhook_url)
            url = f"{self.base_url}/v1/ai/{endpoint}"
            response = self._call("POST", url, stage="submit", json=body)
            if not response.is_success:
                raise classify_error(response.status_code, response.content, response.headers)
            return self._answer(url, json_body(response), response.status_code, None)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def poll(self, job: UpstreamJob) -> Pending | ImageResult:
        try:
            url = job.urls.get("get", "")
            response = self._call("GET", url, stage="poll")
            if not response.is_success:
                raise classify_error(
                    response.status_code, response.content, response.headers, "poll"
                )
            return self._answer(url.rsplit("/", 1)[0], json_body(response), 200, job)
        except ProviderError as err:
            raise scrubbed(err, self.api_key) from None

    def cancel(self, job: UpstreamJob) -> bool:
        return False  # Freepik documents no cancel: the task runs (and bills) on

    def test_connection(self) -> str:
        return _(
            "Freepik has no free call that checks a key: it is checked by the first "
            "image made through it (which is billed)."
        )

    @classmethod
    def verify_webhook(
        cls, headers: dict[str, str], body: bytes, *, secret: str, keys_url: str, now: float
    ) -> WebhookEvent:
        webhook_id = verify_signature(headers, body, secret=secret, now=now)
        try:
            answer = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            answer = None
        task = answer.get("data", answer) if isinstance(answer, dict) else None
        task_id = task.get("task_id") if isinstance(task, dict) else None
        if not isinstance(task_id, str) or not task_id:
            raise WebhookRejected("the signed delivery names no task_id")
        return WebhookEvent(delivery_id=webhook_id, upstream_id=task_id)

    # --- the calls ---------------------------------------------------------------

    @property
    def _headers(self) -> dict[str, str]:
        host = (urlsplit(self.base_url).hostname or "").lower()
        name = "x-magnific-api-key" if host.endswith("magnific.com") else "x-freepik-api-key"
        agent = str(self.options.get("user_agent") or USER_AGENT)
        return {name: self.api_key, "accept": "application/json", "user-agent": agent}

    def _call(self, method: str, url: str, *, stage: str, **kwargs) -> httpx.Response:
        if not url or not same_origin(url, self.base_url):
            raise corrupt(f"refused to send the key to {url.split('?')[0]!r}", None)
        try:
            return self.client.request(
                method, url, headers=self._headers, timeout=self.timeouts.as_httpx(), **kwargs
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            err = transport_error(exc)  # `from None`: the request holds the key
            if stage != "submit":
                err.may_have_been_billed = False
            raise err from None

    def _answer(
        self, endpoint_url: str, answer: Any, http_status: int, job: UpstreamJob | None
    ) -> Pending | ImageResult:
        task = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(task, dict) or not task.get("task_id"):
            raise corrupt(f"answer is not a task: {excerpt(repr(answer), 120)}", http_status)
        task_id = str(task["task_id"])
        status = str(task.get("status") or "").upper()
        job = job or UpstreamJob(task_id, {"get": f"{endpoint_url}/{task_id}"})
        if status in RUNNING:
            return Pending(job, started=status == "IN_PROGRESS")
        if status == "FAILED":
            raise task_error(task, http_status)
        if status != "COMPLETED":
            raise corrupt(f"unknown task status {excerpt(repr(status), 60)}", http_status)
        return self._result(task, http_status)

    def _result(self, task: dict, http_status: int) -> ImageResult:
        usage = Usage()
        flagged = task.get("has_nsfw")
        if isinstance(flagged, list) and any(flag is True for flag in flagged):
            raise ProviderError(
                ErrorKind.BLOCKED,
                str(BLOCKED_MESSAGE),
                detail=f"task {task['task_id']}: an image was flagged nsfw",
                http_status=http_status,
                may_have_been_billed=True,
                usage=usage,
            )
        urls = [u for u in task.get("generated") or [] if isinstance(u, str) and u]
        fetch = origin_fetcher(
            self.base_url, self.client, self._headers, timeout=self.timeouts.read
        )
        images = images_at(
            urls,
            fetch,
            usage,
            http_status,
            none_detail=f"task {task['task_id']} COMPLETED without images",
        )
        return ImageResult(
            images=images, usage=usage, response_id=str(task["task_id"]), http_status=http_status
        )


# --- the request --------------------------------------------------------------------


def build_request(request: ImageRequest, webhook_url: str | None = None) -> dict[str, Any]:
    """The create body of one task; REFUSED when the endpoint cannot take the request."""
    name = request.upstream_model.strip().strip("/")
    endpoint = ENDPOINTS.get(name, Endpoint())
    body: dict[str, Any] = {"prompt": request.prompt}
    size = request.image_size or "1K"
    if endpoint.ratios:
        body["aspect_ratio"] = request.aspect_ratio
    elif request.aspect_ratio != "1:1":
        raise _refused(name, request.aspect_ratio, size)
    if endpoint.resolutions:
        if size not in endpoint.resolutions:
            raise _refused(name, request.aspect_ratio, size)
        body["resolution"] = size
    elif size != "1K":
        raise _refused(name, request.aspect_ratio, size)
    if len(request.references) > endpoint.max_references:
        raise ProviderError(
            ErrorKind.REFUSED,
            _("This provider takes at most %(count)s reference images with %(endpoint)s.")
            % {"count": endpoint.max_references, "endpoint": name},
        )
    if request.references:
        encoded = [base64.b64encode(r.data).decode("ascii") for r in request.references]
        if endpoint.references_as_objects:
            body["reference_images"] = [
                {"image": data, "mime_type": r.mime_type}
                for data, r in zip(encoded, request.references, strict=True)
            ]
        else:
            body["reference_images"] = encoded
    if endpoint.grounding and request.grounding:
        body["use_google_search_tool"] = True
    if webhook_url:
        body["webhook_url"] = webhook_url
    return body


def _refused(endpoint: str, ratio: str, size: str) -> ProviderError:
    return ProviderError(
        ErrorKind.REFUSED,
        _("This provider makes no %(ratio)s image at %(size)s with %(endpoint)s.")
        % {"ratio": ratio, "size": size, "endpoint": endpoint},
        detail=f"{endpoint} takes no {ratio} at {size}",
    )


# --- webhooks -----------------------------------------------------------------------


def signature_of(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Freepik's signature: base64 HMAC-SHA256 of ``id.timestamp.body`` under the secret."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(headers: Mapping[str, str], body: bytes, *, secret: str, now: float) -> str:
    """The webhook id of a delivery whose signature holds (WebhookRejected otherwise)."""
    found = lowered(headers)
    webhook_id = found.get("webhook-id", "").strip()
    stamp = found.get("webhook-timestamp", "").strip()
    signatures = found.get("webhook-signature", "")
    if not (webhook_id and stamp and signatures):
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature")
    if not secret:
        raise WebhookRejected("no webhook secret is configured")
    check_timestamp(stamp, now)
    expected = signature_of(secret, webhook_id, stamp, body).encode()
    for entry in signatures.split():
        _version, _, given = entry.partition(",")
        if given and hmac.compare_digest(given.encode(), expected):
            return webhook_id
    raise WebhookRejected("no webhook-signature matches")


# --- what went wrong ------------------------------------------------------------------


def task_error(task: dict, http_status: int) -> ProviderError:
    said = task.get("error") or task.get("message") or ""
    text = clean_text(said if isinstance(said, str) else json.dumps(said))
    detail = f"task {task['task_id']} FAILED: {text or '(no reason given)'}"
    if any(mark in text.lower() for mark in BLOCK_MARKS):
        return ProviderError(
            ErrorKind.BLOCKED,
            str(BLOCKED_MESSAGE),
            detail=detail,
            http_status=http_status,
            may_have_been_billed=True,
        )
    return ProviderError(
        ErrorKind.TRANSIENT,
        _("The provider failed to make the image."),
        detail=detail,
        http_status=http_status,
        may_have_been_billed=True,  # Freepik does not say whether failed tasks are billed
    )


def classify_error(
    status: int, body: bytes | str, headers: Mapping[str, str] | None, stage: str = "submit"
) -> ProviderError:
    """Classify an error answer (``stage``: submit or poll)."""
    raw = text_of(body)
    said = _said(body) or excerpt(raw, 200) or "(empty body)"
    lowered_said = said.lower()
    detail = f"HTTP {status}: {said}"

    def error_of(kind: ErrorKind, message: str, **extra) -> ProviderError:
        return ProviderError(kind, message, detail=detail, http_status=status, **extra)

    if status == 403 and "penalty box" in raw.lower():
        return error_of(  # the WAF, not the key: it judged the client, and lets it back later
            ErrorKind.TRANSIENT,
            _("The provider's firewall is refusing requests for now."),
            retry_after=retry_after_header(headers),
        )
    if status == 402 or (status in (400, 403) and any(m in lowered_said for m in NO_CREDIT_MARKS)):
        return error_of(ErrorKind.OUT_OF_CREDIT, _("The provider account has run out of credit."))
    if status in (401, 403):
        return error_of(ErrorKind.KEY_INVALID, _("The provider rejected the API key."))
    if status == 429:
        if any(mark in lowered_said for mark in DAILY_MARKS):
            return error_of(
                ErrorKind.KEY_EXHAUSTED,
                _("The provider key has used its daily quota."),
                retry_after=retry_after_header(headers),
            )
        return error_of(
            ErrorKind.RATE_LIMITED,
            _("The provider is receiving too many requests right now."),
            retry_after=retry_after_header(headers),
        )
    if status in (400, 422) and any(mark in lowered_said for mark in BLOCK_MARKS):
        return error_of(ErrorKind.BLOCKED, str(BLOCKED_MESSAGE))
    if status == 404:
        if stage == "submit":
            return error_of(
                ErrorKind.MODEL_GONE,
                _("The provider does not serve this model: %(said)s") % {"said": said},
            )
        return error_of(
            ErrorKind.TRANSIENT,
            _("The provider lost track of the request."),
            may_have_been_billed=True,
        )
    if (err := server_side(status, error_of, may_have_been_billed=stage == "submit")) is not None:
        return err
    return error_of(
        ErrorKind.PERMANENT, _("The provider rejected the request: %(said)s") % {"said": said}
    )


def _said(body: bytes | str) -> str:
    data = loads_or_none(body)
    if not isinstance(data, dict):
        return ""
    said = str(data.get("message") or data.get("detail") or data.get("error") or "")
    invalid = data.get("invalid_params")
    if isinstance(invalid, list) and invalid:
        reasons = "; ".join(
            f"{p.get('field')}: {p.get('reason')}" for p in invalid if isinstance(p, dict)
        )
        said = f"{said} ({reasons})" if said else reasons
    return clean_text(said)
