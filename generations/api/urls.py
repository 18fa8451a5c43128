"""One django-ninja API (OpenAI-compatible + jobs, one OpenAPI document) and the
Gemini-compatible views, with every error in the envelope its clients expect."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig, TooManyFilesSent
from django.http import FileResponse, Http404
from django.urls import path, re_path
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from generations.api import gemini, native, openai_images, results
from generations.api.errors import ApiError
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
    try:
        pk, fmt = results.unsign(value)
    except ApiError as exc:
        return exc.openai()
    gen = (
        Generation.objects.filter(pk=pk, status=Generation.SUCCEEDED)
        .select_related("image")
        .first()
    )
    if gen is None or not hasattr(gen, "image"):
        return ApiError(404, "This image no longer exists.", code="not_found").openai()
    if fmt:
        import io

        data, mime = results.image_bytes(gen, fmt)
        response = FileResponse(io.BytesIO(data), content_type=mime)
    else:
        response = FileResponse(gen.image.file.open("rb"), content_type=gen.image.mime_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


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
    path("", api.urls),
]
