"""Webhook signatures: fal's Ed25519 over a JWKS, Replicate's Standard Webhooks HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from generations.providers import webhooks
from generations.providers.base import QueueProvider, WebhookEvent, WebhookRejected
from generations.providers.fal import FalProvider
from generations.providers.replicate import ReplicateProvider

NOW = 1_763_000_000.0
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
REQUEST_ID = "024ca5b1-45d3-4afd-883e-ad3abe2a1c4d"
USER_ID = "github|alice"
FAL_BODY = json.dumps(
    {"request_id": REQUEST_ID, "status": "OK", "payload": {"images": [{"url": "https://x"}]}}
).encode()


@pytest.fixture(autouse=True)
def _fresh_cache():
    webhooks.clear_jwks_cache()
    yield
    webhooks.clear_jwks_cache()


class JWKSServer:
    """Serves the public halves of ``keys`` as fal's JWKS does (x base64url, padded)."""

    def __init__(self, *keys: Ed25519PrivateKey, pad: bool = True, status: int = 200):
        self.keys = list(keys)
        self.pad = pad
        self.status = status
        self.fetches: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.fetches.append(str(request.url))
        entries = []
        for key in self.keys:
            x = base64.urlsafe_b64encode(key.public_key().public_bytes_raw()).decode()
            entries.append({"kty": "OKP", "crv": "Ed25519", "x": x if self.pad else x.rstrip("=")})
        entries.append({"kty": "RSA", "n": "xyz", "e": "AQAB"})  # not ours: skipped
        return httpx.Response(self.status, json={"keys": entries})


@pytest.fixture
def serve(monkeypatch):
    def install(server: JWKSServer) -> JWKSServer:
        monkeypatch.setattr(
            webhooks, "JWKS_CLIENT", httpx.Client(transport=httpx.MockTransport(server))
        )
        return server

    return install


def fal_headers(key: Ed25519PrivateKey, body: bytes = FAL_BODY, stamp: float = NOW) -> dict:
    ts = str(int(stamp))
    digest = hashlib.sha256(body).hexdigest()
    message = f"{REQUEST_ID}\n{USER_ID}\n{ts}\n{digest}".encode()
    return {
        "x-fal-webhook-request-id": REQUEST_ID,
        "x-fal-webhook-user-id": USER_ID,
        "x-fal-webhook-timestamp": ts,
        "x-fal-webhook-signature": key.sign(message).hex(),
    }


def fal_verify(headers: dict, body: bytes = FAL_BODY, now: float = NOW, keys_url=JWKS_URL):
    return FalProvider.verify_webhook(headers, body, secret="", keys_url=keys_url, now=now)


# --- fal ---------------------------------------------------------------------------------


def test_a_good_fal_delivery_verifies(serve):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(Ed25519PrivateKey.generate(), key))
    event = fal_verify(fal_headers(key))
    assert event == WebhookEvent(delivery_id=f"{REQUEST_ID}:{int(NOW)}", upstream_id=REQUEST_ID)
    assert server.fetches == [JWKS_URL]


def test_the_documented_jwks_url_is_the_default(serve):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(key, pad=False))
    fal_verify(fal_headers(key), keys_url="")
    assert server.fetches == ["https://rest.alpha.fal.ai/.well-known/jwks.json"]


def test_a_tampered_body_is_rejected(serve):
    key = Ed25519PrivateKey.generate()
    serve(JWKSServer(key))
    headers = fal_headers(key)
    with pytest.raises(WebhookRejected):
        fal_verify(headers, body=FAL_BODY.replace(b"OK", b"ERROR"))


def test_a_signature_by_a_key_not_in_the_set_is_rejected(serve):
    serve(JWKSServer(Ed25519PrivateKey.generate()))
    with pytest.raises(WebhookRejected):
        fal_verify(fal_headers(Ed25519PrivateKey.generate()))


def test_changed_signed_headers_are_rejected(serve):
    key = Ed25519PrivateKey.generate()
    serve(JWKSServer(key))
    for name, value in [
        ("x-fal-webhook-request-id", "another-request"),
        ("x-fal-webhook-user-id", "github|mallory"),
        ("x-fal-webhook-signature", "00" * 64),
        ("x-fal-webhook-signature", "not hex"),
    ]:
        with pytest.raises(WebhookRejected):
            fal_verify({**fal_headers(key), name: value})


@pytest.mark.parametrize(
    ("offset", "ok"), [(-301, False), (301, False), (-300, True), (300, True), (0, True)]
)
def test_a_fal_timestamp_must_be_within_five_minutes(serve, offset, ok):
    key = Ed25519PrivateKey.generate()
    serve(JWKSServer(key))
    headers = fal_headers(key, stamp=NOW + offset)
    if ok:
        assert fal_verify(headers).upstream_id == REQUEST_ID
    else:
        with pytest.raises(WebhookRejected):
            fal_verify(headers)


@pytest.mark.parametrize(
    "missing",
    [
        "x-fal-webhook-request-id",
        "x-fal-webhook-user-id",
        "x-fal-webhook-timestamp",
        "x-fal-webhook-signature",
    ],
)
def test_a_fal_delivery_missing_a_header_is_rejected(serve, missing):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(key))
    headers = fal_headers(key)
    del headers[missing]
    with pytest.raises(WebhookRejected):
        fal_verify(headers)
    assert server.fetches == []  # refused before any key was fetched


def test_the_key_set_is_cached_between_deliveries(serve):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(key))
    fal_verify(fal_headers(key))
    fal_verify(fal_headers(key, stamp=NOW + 100), now=NOW + 100)
    assert len(server.fetches) == 1


def test_a_rotated_key_is_fetched_once_on_a_failed_verify(serve):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    server = serve(JWKSServer(old))
    fal_verify(fal_headers(old))
    server.keys = [new]  # fal rotated its keys
    later = NOW + 120
    event = fal_verify(fal_headers(new, stamp=later), now=later)
    assert event.upstream_id == REQUEST_ID
    assert len(server.fetches) == 2
    fal_verify(fal_headers(new, stamp=later + 1), now=later + 1)
    assert len(server.fetches) == 2  # and the new set is cached


def test_forged_deliveries_do_not_make_it_refetch_over_and_over(serve):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(key))
    fal_verify(fal_headers(key))
    forger = Ed25519PrivateKey.generate()
    for second in (1, 2, 3):
        with pytest.raises(WebhookRejected):
            fal_verify(fal_headers(forger, stamp=NOW + second), now=NOW + second)
    assert len(server.fetches) == 1  # the cache is younger than the refetch interval


def test_an_unreachable_key_set_rejects_the_delivery(serve):
    key = Ed25519PrivateKey.generate()
    serve(JWKSServer(key, status=503))
    with pytest.raises(WebhookRejected):
        fal_verify(fal_headers(key))


def test_a_key_set_without_ed25519_keys_rejects(serve):
    key = Ed25519PrivateKey.generate()
    serve(JWKSServer())
    with pytest.raises(WebhookRejected):
        fal_verify(fal_headers(key))


# --- Replicate (Standard Webhooks) -------------------------------------------------------

SECRET_BYTES = b"0123456789abcdef0123456789abcdef"
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
PREDICTION = json.dumps({"id": "gm3qorzdhgbfurvjtvhg6dckhu", "status": "succeeded"}).encode()
MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"


def standard_headers(
    body: bytes = PREDICTION, stamp: float = NOW, secret: bytes = SECRET_BYTES, msg_id=MSG_ID
) -> dict:
    ts = str(int(stamp))
    mac = hmac.new(secret, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def replicate_verify(headers: dict, body: bytes = PREDICTION, now: float = NOW, secret=SECRET):
    return ReplicateProvider.verify_webhook(headers, body, secret=secret, keys_url="", now=now)


def test_a_good_replicate_delivery_verifies():
    event = replicate_verify(standard_headers())
    assert event == WebhookEvent(delivery_id=MSG_ID, upstream_id="gm3qorzdhgbfurvjtvhg6dckhu")


def test_the_published_standard_webhooks_example_verifies():
    # Svix/Standard Webhooks' own example: secret, id, timestamp, payload and signature.
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    ident, stamp = webhooks.verify_standard(
        headers,
        b'{"test": 2432232314}',
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        now=1614265330,
    )
    assert ident == "msg_p5jXN8AQM9LWM0D4loKWxJek" and stamp == 1614265330


def test_one_matching_signature_among_several_is_enough():
    good = standard_headers()["webhook-signature"]
    headers = {
        **standard_headers(),
        "webhook-signature": f"v1,{base64.b64encode(b'x' * 32).decode()} v1a,AAAA {good} v1,%%%",
    }
    assert replicate_verify(headers).delivery_id == MSG_ID


def test_a_bad_replicate_signature_is_rejected():
    headers = {
        **standard_headers(),
        "webhook-signature": "v1," + base64.b64encode(b"0" * 32).decode(),
    }
    with pytest.raises(WebhookRejected):
        replicate_verify(headers)


def test_a_signature_made_with_another_secret_is_rejected():
    with pytest.raises(WebhookRejected):
        replicate_verify(standard_headers(secret=b"another secret of 32 bytes......"))


def test_only_v1_signatures_count():
    mac = standard_headers()["webhook-signature"].split(",", 1)[1]
    with pytest.raises(WebhookRejected):
        replicate_verify({**standard_headers(), "webhook-signature": f"v1a,{mac}"})


def test_a_tampered_replicate_body_or_id_is_rejected():
    with pytest.raises(WebhookRejected):
        replicate_verify(standard_headers(), body=PREDICTION.replace(b"succeeded", b"failed"))
    with pytest.raises(WebhookRejected):
        replicate_verify({**standard_headers(), "webhook-id": "msg_other"})


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (301, False), (-299, True), (299, True)])
def test_a_replicate_timestamp_must_be_within_five_minutes(offset, ok):
    headers = standard_headers(stamp=NOW + offset)
    if ok:
        assert replicate_verify(headers).delivery_id == MSG_ID
    else:
        with pytest.raises(WebhookRejected):
            replicate_verify(headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_replicate_delivery_missing_a_header_is_rejected(missing):
    headers = standard_headers()
    del headers[missing]
    with pytest.raises(WebhookRejected):
        replicate_verify(headers)


def test_a_secret_without_its_prefix_or_padding_works_and_no_secret_rejects():
    unpadded = base64.b64encode(SECRET_BYTES).decode().rstrip("=")
    assert replicate_verify(standard_headers(), secret=unpadded).delivery_id == MSG_ID
    with pytest.raises(WebhookRejected):
        replicate_verify(standard_headers(), secret="")
    with pytest.raises(WebhookRejected):
        replicate_verify(standard_headers(), secret="whsec_***not base64***")


def test_a_signed_body_without_a_prediction_id_is_rejected():
    body = b'{"status": "succeeded"}'
    with pytest.raises(WebhookRejected):
        replicate_verify(standard_headers(body=body), body=body)


def test_queue_providers_without_webhooks_reject_everything():
    with pytest.raises(WebhookRejected):
        QueueProvider.verify_webhook({}, b"", secret="", keys_url="", now=NOW)


def test_expired_cached_keys_still_hold_when_fal_is_unreachable(serve):
    key = Ed25519PrivateKey.generate()
    server = serve(JWKSServer(key))
    fal_verify(fal_headers(key))
    server.status = 503
    later = NOW + webhooks.JWKS_TTL_SECONDS + 10
    assert fal_verify(fal_headers(key, stamp=later), now=later).upstream_id == REQUEST_ID
    assert len(server.fetches) == 2
