"""API tokens: shown once, stored as an HMAC, refused clearly when they cannot be used."""

import datetime as dt
import hashlib
import hmac
import os
import stat
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken
from generations.models import Generation

pytestmark = pytest.mark.django_db


def test_it_stores_no_plaintext_and_authenticates_in_constant_time(alice):
    issued = tokens.create(alice, "nightly script", expires_in_days=30)
    raw = issued.secret
    assert raw.startswith("nw_") and len(raw) > 40
    row = ApiToken.objects.values().get()
    secret = raw.split("_", 2)[2]  # the part after nw_<public id>_; it may itself contain "_"
    assert not any(raw in str(value) or secret in str(value) for value in row.values())
    assert row["prefix"] == raw[:11] and len(row["digest"]) == 64
    assert tokens.authenticate(raw, ip="10.0.0.7") == alice
    row = ApiToken.objects.get()
    assert row.last_used_ip == "10.0.0.7" and row.last_used_at is not None
    assert row.expires_at.date() == (timezone.now() + dt.timedelta(days=30)).date()


@pytest.mark.parametrize(
    "mangle, reason",
    [
        (lambda raw: raw[:-1] + ("A" if raw[-1] != "A" else "B"), "Unknown API token"),
        (lambda raw: "sk-" + raw, "not a nanoweb API token"),
        (lambda raw: "", "No API token"),
        (lambda raw: raw.replace("nw_", "nw_X", 1), "not a nanoweb API token"),
    ],
)
def test_it_refuses_malformed_and_unknown_tokens(alice, mangle, reason):
    raw = tokens.create(alice, "t").secret
    with pytest.raises(tokens.TokenRefused, match=reason):
        tokens.authenticate(mangle(raw))


def test_it_refuses_revoked_expired_and_disabled(alice, bob):
    revoked = tokens.create(alice, "old laptop")
    tokens.revoke(alice, revoked.token.pk)
    with pytest.raises(tokens.TokenRefused, match="'old laptop' was revoked"):
        tokens.authenticate(revoked.secret)
    expired = tokens.create(alice, "trial", expires_in_days=1)
    ApiToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    with pytest.raises(tokens.TokenRefused, match="expired"):
        tokens.authenticate(expired.secret)
    gone = tokens.create(bob, "bob's")
    bob.is_active = False
    bob.save()
    with pytest.raises(tokens.TokenRefused, match="disabled"):
        tokens.authenticate(gone.secret)


def test_the_api_page_shows_a_new_token_once_and_revokes(client, alice):
    client.force_login(alice)
    page = client.post("/settings/api", {"name": "thumbnails", "expires_in_days": "90"})
    assert page.status_code == 200
    secret = page.context["issued"].secret
    assert secret in page.content.decode() and "shown only once" in page.content.decode()
    again = client.get("/settings/api").content.decode()
    assert secret not in again and "thumbnails" in again and secret[:11] in again
    assert "never" in again
    tokens.authenticate(secret, ip="10.0.0.7")
    used = client.get("/settings/api").content.decode()
    assert "now<br>" in used and "from 10.0.0.7" in used and "0\xa0minutes" not in used
    token = ApiToken.objects.get()
    assert client.post(f"/settings/api/tokens/{token.pk}/revoke").status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    assert "revoked" in client.get("/settings/api").content.decode()


def test_bad_token_forms_change_nothing(client, alice):
    client.force_login(alice)
    assert client.post("/settings/api", {"name": "  "}).status_code == 400
    assert client.post("/settings/api", {"name": "x", "expires_in_days": "7"}).status_code == 400
    assert client.post("/settings/api", {"name": "x", "expires_in_days": "soon"}).status_code == 400
    assert not ApiToken.objects.exists()


def test_nobody_revokes_someone_elses_token(client, alice, bob):
    token = tokens.create(alice, "alice's").token
    client.force_login(bob)
    assert client.post(f"/settings/api/tokens/{token.pk}/revoke").status_code == 404
    assert ApiToken.objects.get().revoked_at is None


def test_a_session_alone_does_not_open_the_api(client, alice, sandbox_model):
    client.force_login(alice)
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = client.post("/api/v1/generations", {"prompt": "x"}, content_type="application/json")
    assert r.status_code == 401


def test_token_calls_need_no_csrf_but_the_browser_forms_still_do(alice, sandbox_model, no_broker):
    raw = tokens.create(alice, "script").secret
    strict = Client(enforce_csrf_checks=True)
    r = strict.post(
        "/api/v1/generations",
        {"prompt": "a fox", "model": "sandbox"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert r.status_code == 202
    strict.force_login(alice)
    assert strict.post("/settings/api", {"name": "sneaky"}).status_code == 403
    assert strict.post("/generate", {"prompt": "a fox"}).status_code == 403
    assert ApiToken.objects.count() == 1


def test_google_clients_authenticate_by_header_or_query(client, alice, sandbox_model):
    raw = tokens.create(alice, "genai").secret
    assert client.get("/v1/models", HTTP_X_GOOG_API_KEY=raw).status_code == 200
    assert client.get(f"/v1/models?key={raw}").status_code == 200
    assert client.get(f"/v1beta/models?key={raw}").status_code == 200
    assert client.get("/v1/models?key=nw_bad").status_code == 401


@pytest.mark.parametrize(
    "method, path",
    [
        ("post", "/v1/images/generations"),
        ("post", "/api/v1/generations"),
        ("get", "/api/v1/generations"),
    ],
)
def test_a_token_in_the_url_is_refused_outside_the_gemini_routes(
    client, alice, sandbox_model, no_broker, method, path
):
    raw = tokens.create(alice, "curl").secret
    call = getattr(client, method)
    body = {"prompt": "a fox", "model": "sandbox"} if method == "post" else None
    r = call(f"{path}?key={raw}", body, content_type="application/json")
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and "not in the URL" in error["message"]
    assert not Generation.objects.exists()
    # The same token in a header is fine, a stray ?key= beside it ignored.
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    if method == "get":
        assert call(f"{path}?key={raw}", **headers).status_code == 200


def test_the_page_that_shows_a_new_token_is_never_stored_by_a_browser_or_proxy(client, alice):
    client.force_login(alice)
    for response in (
        client.post("/settings/api", {"name": "ci", "expires_in_days": "90"}),
        client.get("/settings/api"),
    ):
        assert "no-store" in response["Cache-Control"]
        assert "private" in response["Cache-Control"]


def _digest_under_secret_key(raw: str, secret_key: str) -> str:
    """How tokens were stored before they had a key of their own."""
    key = hashlib.sha256(b"nanoweb api tokens\x00" + secret_key.encode()).digest()
    return hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()


def test_it_keeps_working_when_the_secret_key_is_rotated(alice, settings):
    raw = tokens.create(alice, "cron").secret
    settings.SECRET_KEY_FALLBACKS = []
    settings.SECRET_KEY = "a-new-secret-key-after-a-leak-" + "x" * 30
    assert tokens.authenticate(raw) == alice


def test_a_token_made_under_the_secret_key_survives_its_rotation_and_moves_over(alice, settings):
    raw = tokens.create(alice, "from last year").secret
    old = settings.SECRET_KEY
    ApiToken.objects.update(digest=_digest_under_secret_key(raw, old))
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "rotated-" + "y" * 40, [old]
    assert tokens.authenticate(raw) == alice
    # Re-hashed under the token key on that use: dropping the old key later is safe.
    assert ApiToken.objects.get().digest != _digest_under_secret_key(raw, old)
    settings.SECRET_KEY_FALLBACKS = []
    assert tokens.authenticate(raw) == alice


def test_a_new_token_key_ends_every_token_at_once(alice, settings):
    raw = tokens.create(alice, "leaked everywhere").secret
    settings.NANOWEB_TOKEN_KEY = "a-fresh-token-key-" + "z" * 40
    with pytest.raises(tokens.TokenRefused, match="Unknown API token"):
        tokens.authenticate(raw)


def test_the_default_token_key_is_a_private_file_of_its_own(settings):
    if os.environ.get("NANOWEB_TOKEN_KEY"):
        pytest.skip("NANOWEB_TOKEN_KEY is set in the environment")
    path = Path(settings.VAR_DIR) / "token_key"
    assert path.read_text().strip() == settings.NANOWEB_TOKEN_KEY != settings.SECRET_KEY
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
