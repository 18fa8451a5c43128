"""Who is calling: an API token, never a session cookie.

OpenAI clients send ``Authorization: Bearer nw_…``; Google clients send
``x-goog-api-key: nw_…`` or ``?key=nw_…``. Both are accepted everywhere, so one
token works with every SDK. A refused token is a 401 saying why.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from ninja.security import HttpBearer

from accounts import tokens
from generations.api.errors import ApiError


def raw_token(request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-goog-api-key") or request.GET.get("key") or None


def speaks_gemini(request) -> bool:
    """A Google client: its key as ``x-goog-api-key`` or ``?key=`` and no Bearer token.
    Where one path serves both SDKs (``/v1/models``), this picks the Gemini shape."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return False
    return bool(request.headers.get("x-goog-api-key") or request.GET.get("key"))


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def user_for(request):
    """The token's user (sync), or ApiError 401 naming the reason."""
    try:
        return tokens.authenticate(raw_token(request), ip=client_ip(request))
    except tokens.TokenRefused as exc:
        raise ApiError(401, exc.message, code="invalid_api_key") from exc


async def auser_for(request):
    return await sync_to_async(user_for)(request)


class TokenAuth(HttpBearer):
    """django-ninja security scheme (documented as HTTP Bearer in the OpenAPI)."""

    def __call__(self, request):
        user = user_for(request)
        request.user = user
        return user

    def authenticate(self, request, token):  # pragma: no cover - __call__ does it all
        return user_for(request)
