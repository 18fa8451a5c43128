"""API tokens: ``nw_<public id>_<secret>``, stored only as an HMAC.

The public id (the prefix shown in lists) finds the row; the HMAC of the whole
token is compared in constant time. The HMAC is keyed by ``NANOWEB_TOKEN_KEY``, a
secret of its own, so rotating ``SECRET_KEY`` leaves every token working (and
rotating the token key is the one switch that ends them all). Tokens made before
that key existed were keyed by ``SECRET_KEY``: they are still accepted under it or
any of ``SECRET_KEY_FALLBACKS``, and re-hashed with the token key on first use.
A token acts as its user, with that user's limits. Nothing here logs a token.

Each process remembers a token it checked (and its user's row) for
``NANOWEB_TOKEN_CACHE_SECONDS``, so a busy script costs no query per call: a token
revoked here is refused at once, elsewhere (another web process, an admin's edit of the
user) within that time. Only tokens that matched are remembered, by their digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiToken, User

PREFIX = "nw_"
TOKEN_RE = re.compile(r"^nw_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{32,64})$")
LAST_USED_EVERY = dt.timedelta(minutes=1)  # a busy script does not write on every call
EXPIRY_CHOICES = [(None, _("Never")), (30, _("30 days")), (90, _("90 days")), (365, _("1 year"))]


# digest of the whole token → (when to look again, token id, its fields, its user's fields)
_checked: dict[str, tuple[float, int, tuple, tuple]] = {}
_CHECKED_MAX = 4096  # distinct tokens remembered per process before starting over
_clock = time.monotonic


class TokenRefused(Exception):
    """Why a token cannot be used, in words a script's author can act on: only the HTTP
    API raises it, and the API answers in English, so these stay untranslated."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Issued:
    token: ApiToken
    secret: str  # the whole token, shown once


def _digest(raw: str, secret: str | None = None) -> str:
    """The stored form of ``raw``: an HMAC under ``secret`` (default: the token key)."""
    secret = settings.NANOWEB_TOKEN_KEY if secret is None else secret
    key = hashlib.sha256(b"nanoweb api tokens\x00" + secret.encode()).digest()
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def _matches(token: ApiToken, raw: str) -> bool:
    """Whether ``raw`` is ``token``'s secret; a digest made under ``SECRET_KEY`` (or a
    fallback) is moved to the token key at once, so the older keys are tried only once
    per token."""
    if hmac.compare_digest(token.digest, _digest(raw)):
        return True
    for old in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        if hmac.compare_digest(token.digest, _digest(raw, old)):
            ApiToken.objects.filter(pk=token.pk, digest=token.digest).update(digest=_digest(raw))
            return True
    return False


def create(user: User, name: str, *, expires_in_days: int | None = None) -> Issued:
    name = name.strip()
    if not name:
        raise ValueError(gettext("Give the token a name, e.g. the script that will use it."))
    public = secrets.token_urlsafe(12).replace("-", "").replace("_", "")[:8]
    while len(public) < 8 or ApiToken.objects.filter(prefix=PREFIX + public).exists():
        public = secrets.token_urlsafe(12).replace("-", "").replace("_", "")[:8]
    raw = f"{PREFIX}{public}_{secrets.token_urlsafe(32)}"
    expires = timezone.now() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    token = ApiToken.objects.create(
        user=user, name=name[:100], prefix=PREFIX + public, digest=_digest(raw), expires_at=expires
    )
    return Issued(token=token, secret=raw)


def authenticate(raw: str | None, *, ip: str | None = None) -> User:
    """The active user a token belongs to, or :class:`TokenRefused` saying why."""
    if not raw:
        raise TokenRefused("No API token: send it as 'Authorization: Bearer nw_…'.")
    raw = raw.strip()
    match = TOKEN_RE.match(raw)
    if not match:
        raise TokenRefused("That is not a nanoweb API token (they start with 'nw_').")
    digest = _digest(raw)
    token = _remembered(digest)
    if token is None:
        token = (
            ApiToken.objects.select_related("user").filter(prefix=PREFIX + match.group(1)).first()
        )
        if token is None or not _matches(token, raw):
            raise TokenRefused("Unknown API token; create one on the API page of your instance.")
        _remember(digest, token)
    now = timezone.now()
    if token.revoked_at:
        raise TokenRefused(f"The API token '{token.name}' was revoked.")
    if token.expires_at and token.expires_at <= now:
        raise TokenRefused(
            f"The API token '{token.name}' expired on "
            f"{timezone.localtime(token.expires_at):%Y-%m-%d}."
        )
    if not token.user.is_active:
        raise TokenRefused("The account this token belongs to is disabled.")
    if (
        token.last_used_at is None
        or now - token.last_used_at >= LAST_USED_EVERY
        or token.last_used_ip != ip
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_ip=ip)
        token.last_used_at, token.last_used_ip = now, ip
        _remember(digest, token, renew=False)
    token.user.api_token = token
    return token.user


def _fields(row) -> tuple:
    return tuple(getattr(row, f.attname) for f in row._meta.concrete_fields)


def _remember(digest: str, token: ApiToken, *, renew: bool = True) -> None:
    """Keep ``token`` and its user's row; ``renew=False`` keeps the time to look again."""
    seconds = settings.NANOWEB_TOKEN_CACHE_SECONDS
    if seconds <= 0:
        return
    until = _clock() + seconds
    if not renew:
        until = _checked.get(digest, (until,))[0]
    if len(_checked) >= _CHECKED_MAX:
        _checked.clear()
    _checked[digest] = (until, token.pk, _fields(token), _fields(token.user))


def _remembered(digest: str) -> ApiToken | None:
    """A fresh copy of the remembered token and user (callers may change them freely)."""
    entry = _checked.get(digest)
    if entry is None or entry[0] <= _clock():
        return None
    _until, _pk, token_values, user_values = entry
    token = ApiToken.from_db(
        "default", [f.attname for f in ApiToken._meta.concrete_fields], token_values
    )
    token.user = User.from_db(
        "default", [f.attname for f in User._meta.concrete_fields], user_values
    )
    return token


def forget(token: ApiToken) -> None:
    """Stop remembering ``token`` in this process (it was just revoked)."""
    for digest, entry in list(_checked.items()):
        if entry[1] == token.pk:
            _checked.pop(digest, None)


def revoke(user: User, pk: int) -> ApiToken | None:
    token = ApiToken.objects.filter(user=user, pk=pk).first()
    if token is not None and token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        forget(token)
    return token


def listing(user: User):
    return ApiToken.objects.filter(user=user).order_by("revoked_at", "-created")
