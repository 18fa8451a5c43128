"""API errors: one exception, rendered in the envelope each client family expects.

OpenAI-style (also used by the native jobs API)::

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

Gemini-style (``google.rpc.Status``)::

    {"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED", "details": [...]}}
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from django.http import JsonResponse
from django.utils import timezone

from accounts.periods import next_midnight, next_month_start, quota_day, quota_zone
from accounts.quotas import QuotaExceeded
from generations.jobs import StorageUnavailable, SubmitError

NESTED_TOO_DEEPLY = "The request body is nested too deeply to read."

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}
GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# Form fields of the job request → the parameter names API clients sent.
OPENAI_PARAMS = {
    "aspect_ratio": "size",
    "image_size": "quality",
    "count": "n",
    "references": "image",
    "model": "model",
    "prompt": "prompt",
}


@dataclass
class ApiError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    retry_after: int | None = None  # seconds, for 429s
    retryable: bool = False  # whether the SDKs' automatic retry may help
    extra: dict = field(default_factory=dict)
    allow: tuple[str, ...] = ()  # for 405s: the methods the path takes

    @classmethod
    def not_allowed(cls, method: str, path: str, allow: tuple[str, ...]) -> ApiError:
        return cls(
            405,
            f"{path} does not take {method} requests; use {' or '.join(allow)}.",
            code="method_not_allowed",
            allow=allow,
        )

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        headers = {"x-should-retry": "true" if self.retryable else "false"}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.allow:
            headers["Allow"] = ", ".join(self.allow)
        return headers

    def openai(self) -> JsonResponse:
        kind = OPENAI_TYPES.get(self.status, "server_error")
        if self.code == "insufficient_quota":
            kind = "insufficient_quota"
        body = {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
                **self.extra,
            }
        }
        return JsonResponse(body, status=self.status, headers=self.headers())

    def gemini(self) -> JsonResponse:
        status = GRPC_STATUS.get(self.status, "INTERNAL")
        details = []
        if self.retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{self.retry_after}s",
                }
            )
        if self.param:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": self.param, "description": self.message}],
                }
            )
        body = {
            "error": {
                "code": self.status,
                "message": self.message,
                "status": status,
                "details": details,
            }
        }
        return JsonResponse(body, status=self.status, headers=self.headers())


def from_submit(exc: SubmitError, params: dict[str, str] | None = None) -> ApiError:
    """A refused submit: over quota → 429 naming the limit, references that could not be
    stored → 503, anything else → 400."""
    if isinstance(exc, StorageUnavailable):
        return ApiError(
            503,
            "The reference images could not be stored: this instance's storage is "
            "unavailable (it may be full). Nothing was charged; try again later.",
            code="storage_unavailable",
            retry_after=60,
            retryable=True,
        )
    if exc.limit is not None:
        concurrency = exc.limit == QuotaExceeded.IN_PROGRESS
        return ApiError(
            429,
            exc.message,
            code="rate_limit_exceeded" if concurrency else "insufficient_quota",
            retry_after=_seconds_until_reset(exc.limit),
            retryable=concurrency,
        )
    names = {**OPENAI_PARAMS, **(params or {})}
    return ApiError(
        400, exc.message, param=names.get(exc.field or "", exc.field), code="invalid_value"
    )


def _seconds_until_reset(limit: str) -> int:
    """When a refused request could succeed: jobs in progress finish within seconds,
    daily limits reset at midnight in the quota zone, budgets on the 1st."""
    now = timezone.now()
    if limit == QuotaExceeded.IN_PROGRESS:
        return 10
    if limit == QuotaExceeded.IMAGES:
        return math.ceil((next_midnight(now) - now).total_seconds())
    first = dt.datetime.combine(next_month_start(quota_day(now)), dt.time.min, tzinfo=quota_zone())
    return math.ceil((first - now).total_seconds())
