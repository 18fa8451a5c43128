"""Checking that a webhook delivery really comes from the upstream, before it is believed.

Two schemes, each to its owner's documentation:

**Standard Webhooks** (Replicate). Headers ``webhook-id``, ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature``: space-separated ``v1,<base64>`` entries, one per secret
during a rotation. The signed content is ``{id}.{timestamp}.{raw body}``, HMAC-SHA256 keyed
with the base64-decoded part of the ``whsec_…`` secret after its prefix; signatures are
compared in constant time, other versions (``v1a``: asymmetric) skipped, and the timestamp
must lie within five minutes of now either way. Sources: the specification
(github:standard-webhooks/standard-webhooks spec/standard-webhooks.md, "Signature scheme",
"Verifying signatures") and its reference library (libraries/python/standardwebhooks/
webhooks.py: ``whsec_`` stripped, unpadded base64 accepted, ±5 min tolerance); Replicate's
own validator (github:replicate/replicate-python replicate/webhook.py) and its secret
endpoint ``GET /v1/webhooks/default/secret`` → ``{"key": "whsec_…"}``.

**fal** (Ed25519 over a JWKS). Headers ``x-fal-webhook-request-id``,
``x-fal-webhook-user-id``, ``x-fal-webhook-timestamp`` (Unix seconds) and
``x-fal-webhook-signature`` (hex). The signed message is the UTF-8 of
``request_id \\n user_id \\n timestamp \\n sha256(raw body).hexdigest()``, verified against
each Ed25519 key (``kty: OKP``, ``crv: Ed25519``, ``x`` base64url — fal's live JWKS pads it)
of the JWKS at ``https://rest.alpha.fal.ai/.well-known/jwks.json``; timestamps more than 300 s
away from now are refused. Sources: fal.ai/docs model-apis webhooks, "Verifying Your Webhook"
(JWKS, headers, timestamp, message, ED25519), and independent implementations in the code
corpus that agree on every step. fal says its keys may rotate: the key set is cached per URL
for an hour and fetched again (at most every 30 s, so forged deliveries cannot make us hammer
fal) when no cached key verifies a delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from generations.providers.base import WebhookRejected, shared_http_client

TOLERANCE_SECONDS = 300
FAL_JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
JWKS_TTL_SECONDS = 3600
JWKS_REFETCH_SECONDS = 30
MAX_JWKS_BYTES = 64 * 1024

# Tests put a client with a mock transport here; otherwise the shared pool is used.
JWKS_CLIENT: httpx.Client | None = None

_jwks_lock = threading.Lock()
_jwks_cache: dict[str, tuple[float, list[Ed25519PublicKey]]] = {}


def lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def check_timestamp(value: str, now: float) -> int:
    try:
        stamp = int(value.strip())
    except (ValueError, AttributeError):
        raise WebhookRejected(f"unreadable timestamp {value!r}") from None
    if abs(now - stamp) > TOLERANCE_SECONDS:
        raise WebhookRejected(f"timestamp {stamp} is more than {TOLERANCE_SECONDS}s from now")
    return stamp


# --- Standard Webhooks ----------------------------------------------------------


def standard_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    encoded = (secret or "").strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("the webhook secret is not base64 (whsec_…)") from None
    if not key:
        raise WebhookRejected("no webhook secret is configured")
    return key


def verify_standard(
    headers: Mapping[str, str], body: bytes, *, secret: str, now: float
) -> tuple[str, int]:
    """(webhook id, timestamp) of a delivery whose Standard Webhooks signature holds."""
    found = lowered(headers)
    webhook_id = found.get("webhook-id", "").strip()
    stamp_text = found.get("webhook-timestamp", "")
    signatures = found.get("webhook-signature", "")
    if not (webhook_id and stamp_text and signatures):
        raise WebhookRejected("missing webhook-id, webhook-timestamp or webhook-signature")
    stamp = check_timestamp(stamp_text, now)
    key = standard_secret(secret)
    signed = webhook_id.encode() + b"." + stamp_text.strip().encode() + b"." + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return webhook_id, stamp
    raise WebhookRejected("no webhook-signature matches")


# --- fal: Ed25519 against fal's JWKS ----------------------------------------------


def fal_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return "\n".join([request_id, user_id, timestamp, digest]).encode("utf-8")


def verify_fal(
    headers: Mapping[str, str], body: bytes, *, keys_url: str, now: float
) -> tuple[str, str]:
    """(request id, timestamp) of a delivery signed by one of the keys at ``keys_url``."""
    found = lowered(headers)
    names = ("request-id", "user-id", "timestamp", "signature")
    request_id, user_id, stamp_text, signature = (
        found.get(f"x-fal-webhook-{name}", "").strip() for name in names
    )
    if not (request_id and user_id and stamp_text and signature):
        raise WebhookRejected("missing x-fal-webhook-* headers")
    check_timestamp(stamp_text, now)
    try:
        raw_signature = bytes.fromhex(signature)
    except ValueError:
        raise WebhookRejected("x-fal-webhook-signature is not hex") from None
    message = fal_message(request_id, user_id, stamp_text, body)
    url = keys_url or FAL_JWKS_URL
    keys, fresh = jwks_keys(url, now)
    if _any_verifies(keys, raw_signature, message):
        return request_id, stamp_text
    if not fresh:  # the keys may have rotated since they were cached
        keys, fresh = jwks_keys(url, now, refresh=True)
        if fresh and _any_verifies(keys, raw_signature, message):
            return request_id, stamp_text
    raise WebhookRejected("the fal webhook signature does not verify")


def _any_verifies(keys: list[Ed25519PublicKey], signature: bytes, message: bytes) -> bool:
    for key in keys:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            continue
        return True
    return False


def jwks_keys(url: str, now: float, *, refresh: bool = False) -> tuple[list, bool]:
    """The Ed25519 keys at ``url`` and whether they were fetched just now. Cached for
    :data:`JWKS_TTL_SECONDS`; ``refresh`` fetches again unless the cache is younger than
    :data:`JWKS_REFETCH_SECONDS`."""
    with _jwks_lock:
        cached = _jwks_cache.get(url)
    if cached is not None:
        age = now - cached[0]
        if 0 <= age < (JWKS_REFETCH_SECONDS if refresh else JWKS_TTL_SECONDS):
            return cached[1], False
    try:
        keys = fetch_jwks(url)
    except WebhookRejected:
        if cached is None:
            raise
        return cached[1], False  # fal unreachable: the keys it last published still hold
    with _jwks_lock:
        _jwks_cache[url] = (now, keys)
    return keys, True


def clear_jwks_cache() -> None:
    with _jwks_lock:
        _jwks_cache.clear()


def fetch_jwks(url: str) -> list[Ed25519PublicKey]:
    client = JWKS_CLIENT or shared_http_client()
    try:
        response = client.get(url, headers={"accept": "application/json"}, timeout=10.0)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise WebhookRejected(f"could not fetch the webhook keys: {type(exc).__name__}") from None
    if response.status_code != 200 or len(response.content) > MAX_JWKS_BYTES:
        raise WebhookRejected(f"could not fetch the webhook keys: HTTP {response.status_code}")
    try:
        entries = json.loads(response.content).get("keys") or []
    except (ValueError, AttributeError):
        raise WebhookRejected("the webhook key set is not a JWKS") from None
    keys = [key for key in map(ed25519_key, entries if isinstance(entries, list) else []) if key]
    if not keys:
        raise WebhookRejected("the webhook key set holds no Ed25519 key")
    return keys


def ed25519_key(entry: object) -> Ed25519PublicKey | None:
    if not isinstance(entry, dict) or entry.get("kty") != "OKP" or entry.get("crv") != "Ed25519":
        return None
    x = str(entry.get("x") or "").strip().rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        return None
