"""One django-ninja API (OpenAI-compatible + jobs, one OpenAPI document) and the
Gemini-compatible views, with every error in the envelope its clients expect.

``/v1/models`` and ``/v1/models/{model}`` serve both SDKs (google-genai's default API
version is v1): a Google key (``x-goog-api-key`` or ``?key=``, no Bearer token) gets
Google's shape, anything else OpenAI's. Unknown paths and wrong methods under ``/v1``,
``/v1beta``, ``/v1alpha`` and ``/api/v1`` answer in their API's envelope too, never
with Django's HTML pages.
"""

from __future__ import annotations

import io
import logging

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import FileResponse, Http404, HttpResponseNotAllowed
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern, path, re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from generations.api import gemini, native, openai_images, results
from generations.api.auth import speaks_gemini
from generations.api.errors import NESTED_TOO_DEEPLY, ApiError
from generations.models import Generation

log = logging.getLogger(__name__)

api = NinjaAPI(
    title="nanoweb API",
    version="1",
    description="Image generation with your nanoweb quota. Authenticate with "
    "`Authorization: Bearer nw_…` (create a token on the API page).",
    urls_namespace="api",
    docs_url="/api/v1/docs",
    openapi_url="/api/v1/openapi.json",
)
api.add_router("/v1/", openai_images.router)
api.add_router("/api/v1/", native.router)


@api.exception_handler(ApiError)
def _api_error(request, exc: ApiError):
    return exc.openai()


@api.exception_handler(ValidationError)
def _validation(request, exc: ValidationError):
    first = exc.errors[0] if exc.errors else {}
    loc = [str(p) for p in first.get("loc", []) if p not in ("body", "form", "query", "path")]
    param = ".".join(loc) or None
    message = first.get("msg", "Invalid request.")
    return ApiError(
        400, f"{param}: {message}" if param else message, param=param, code="invalid_value"
    ).openai()


@api.exception_handler(AuthenticationError)
def _unauthenticated(request, exc):
    return ApiError(
        401, "No API token: send it as 'Authorization: Bearer nw_…'.", code="invalid_api_key"
    ).openai()


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    return ApiError(exc.status_code, str(exc)).openai()


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return ApiError(413, "The request body is too large.", code="request_too_large").openai()


@api.exception_handler(TooManyFilesSent)
def _too_many_files(request, exc):
    return ApiError(
        400, "Too many files in one request.", param="image", code="invalid_value"
    ).openai()


@api.exception_handler(TooManyFieldsSent)
def _too_many_fields(request, exc):
    return ApiError(
        400,
        f"Too many form fields in one request (at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS}).",
        code="invalid_value",
    ).openai()


@api.exception_handler(MultiPartParserError)
def _bad_multipart(request, exc):
    return ApiError(
        400, f"The multipart/form-data body could not be read: {exc}", code="invalid_value"
    ).openai()


@api.exception_handler(RecursionError)
def _too_deep(request, exc):
    return ApiError(400, NESTED_TOO_DEEPLY, param="body", code="invalid_value").openai()


@api.exception_handler(Http404)
def _not_found(request, exc):
    return ApiError(404, "Not found.", code="not_found").openai()


@api.exception_handler(Exception)
def _unexpected(request, exc):
    log.exception("API request failed: %s %s", request.method, request.path)
    return ApiError(
        500,
        "Something went wrong on this instance; the error is in its log. "
        "Nothing was charged for a request that did not start.",
        code="server_error",
        retryable=True,
    ).openai()


def media(request, value: str):
    """A signed, expiring image link (the ``url`` of API answers): no token needed."""
    if request.method not in ("GET", "HEAD"):
        return ApiError.not_allowed(request.method, request.path, ("GET", "HEAD")).openai()
    try:
        pk, fmt = results.unsign(value)
    except ApiError as exc:
        return exc.openai()
    gen = (
        # A deleted image's links stop working at once (its files wait out the undo
        # window, but nobody outside the gallery may fetch them meanwhile).
        Generation.objects.filter(
            pk=pk, status=Generation.SUCCEEDED, image__deleted_at__isnull=True
        )
        .select_related("image")
        .first()
    )
    if gen is None or not hasattr(gen, "image"):
        return ApiError(404, "This image no longer exists.", code="not_found").openai()
    if fmt:
        data, mime = results.image_bytes(gen, fmt)
        response = FileResponse(io.BytesIO(data), content_type=mime)
    else:
        response = FileResponse(gen.image.file.open("rb"), content_type=gen.image.mime_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _gemini_client(request) -> bool:
    """Whose envelope a path with no endpoint or a wrong method gets: Google's under
    /v1beta and /v1alpha, and under /v1 for a Google key; OpenAI's otherwise."""
    version = request.path.lstrip("/").split("/", 1)[0]
    return version in ("v1beta", "v1alpha") or (version == "v1" and speaks_gemini(request))


def _render(request, exc: ApiError):
    return exc.gemini() if _gemini_client(request) else exc.openai()


@csrf_exempt
def no_such_endpoint(request, rest: str = ""):
    return _render(
        request,
        ApiError(404, f"There is no API endpoint at {request.path}.", code="not_found"),
    )


def _not_allowed_in_envelope(request, response):
    """django-ninja answers a wrong method with an empty 405: give it the envelope."""
    if isinstance(response, HttpResponseNotAllowed):
        allow = tuple(sorted(m.strip() for m in response["Allow"].split(",") if m.strip()))
        return _render(request, ApiError.not_allowed(request.method, request.path, allow))
    return response


def _enveloped(pattern: URLPattern) -> URLPattern:
    view = pattern.callback
    if iscoroutinefunction(view):

        async def wrapped(request, *args, **kwargs):
            return _not_allowed_in_envelope(request, await view(request, *args, **kwargs))

    else:

        def wrapped(request, *args, **kwargs):
            return _not_allowed_in_envelope(request, view(request, *args, **kwargs))

    wrapped.csrf_exempt = True
    return URLPattern(pattern.pattern, wrapped, pattern.default_args, pattern.name)


ninja_patterns, ninja_app, ninja_namespace = api.urls
ninja_patterns = [_enveloped(p) if isinstance(p, URLPattern) else p for p in ninja_patterns]
_openai_views = {p.name: p.callback for p in ninja_patterns if isinstance(p, URLPattern)}


def _either(openai_view, gemini_view):
    """One /v1 path for both SDKs: Google's shape for a Google key, OpenAI's otherwise."""

    @csrf_exempt
    def view(request, **kwargs):
        if speaks_gemini(request):
            return gemini_view(request, **kwargs)
        return openai_view(request, **kwargs)

    return view


urlpatterns = [
    path("v1/media/<str:value>", media, name="api-media"),
    re_path(
        r"^v1(?:beta|alpha)?/models/(?P<model>[^/:]+):generateContent$",
        gemini.generate_content,
        name="gemini-generate",
    ),
    re_path(
        r"^v1(?:beta|alpha)?/models/(?P<model>[^/:]+):streamGenerateContent$",
        gemini.stream_generate_content,
        name="gemini-stream",
    ),
    re_path(
        r"^v1(?:beta|alpha)?/models/(?P<model>[^/:]+):(?P<method>[^/]*)$",
        gemini.unknown_method,
        name="gemini-unknown-method",
    ),
    re_path(r"^v1(?:beta|alpha)/models$", gemini.list_models, name="gemini-models"),
    re_path(r"^v1(?:beta|alpha)/models/(?P<model>[^/:]+)$", gemini.get_model, name="gemini-model"),
    path(
        "v1/models",
        _either(_openai_views["openai-models"], gemini.list_models),
        name="v1-models",
    ),
    path(
        "v1/models/<str:model>",
        _either(_openai_views["openai-model"], gemini.get_model),
        name="v1-model",
    ),
    path("", (ninja_patterns, ninja_app, ninja_namespace)),
    # Last: whatever no endpoint above took, in its API's envelope.
    re_path(r"^(?:v1(?:beta|alpha)?|api/v1)(?:/(?P<rest>.*))?$", no_such_endpoint),
]
