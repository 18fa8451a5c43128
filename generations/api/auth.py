"""Who is calling: an API token, never a session cookie.

OpenAI clients send ``Authorization: Bearer nw_…``; Google clients send
``x-goog-api-key: nw_…``. Both headers are accepted everywhere, so one token works
with every SDK. ``?key=nw_…`` is accepted only on the Gemini-compatible routes, as
Google does: a token in a URL ends up in proxies' and browsers' histories, so the
other APIs refuse it (and the access logs leave query strings out). A refused
token is a 401 saying why.
"""

from __future__ import annotations

from ninja.security import HttpBearer

from accounts import tokens
from generations.api.errors import ApiError

QUERY_KEY_REFUSED = (
    "Send the API token as 'Authorization: Bearer nw_…', not in the URL: ?key= is "
    "accepted only on the Gemini-compatible routes (/v1beta/models/…)."
)


def raw_token(request, *, from_query: bool = False) -> str | None:
    """The token from the headers, or (``from_query``, Gemini routes) from ``?key=``."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    found = request.headers.get("x-goog-api-key")
    if not found and from_query:
        found = request.GET.get("key")
    return found or None


def speaks_gemini(request) -> bool:
    """A Google client: its key as ``x-goog-api-key`` or ``?key=`` and no Bearer token.
    Where one path serves both SDKs (``/v1/models``), this picks the Gemini shape."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return False
    return bool(request.headers.get("x-goog-api-key") or request.GET.get("key"))


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


def user_for(request, *, from_query: bool = False):
    """The token's user (sync), or ApiError 401 naming the reason. ``from_query``: the
    Gemini-compatible routes, which also take ``?key=``."""
    raw = raw_token(request, from_query=from_query)
    if raw is None and not from_query and request.GET.get("key"):
        raise ApiError(401, QUERY_KEY_REFUSED, param="key", code="invalid_api_key")
    try:
        return tokens.authenticate(raw, ip=client_ip(request))
    except tokens.TokenRefused as exc:
        raise ApiError(401, exc.message, code="invalid_api_key") from exc


def gemini_user_for(request):
    """:func:`user_for` on a Gemini-compatible route: ``?key=`` is a token too."""
    return user_for(request, from_query=True)


class TokenAuth(HttpBearer):
    """django-ninja security scheme (documented as HTTP Bearer in the OpenAPI)."""

    def __call__(self, request):
        user = user_for(request)
        request.user = user
        return user

    def authenticate(self, request, token):  # pragma: no cover - __call__ does it all
        return user_for(request)
