"""Sign-in through django-allauth: throttles on every sign-in form (the admin's too),
invitations, Google Workspace and OpenID Connect through a local provider, two-step
sign-in for staff."""

from __future__ import annotations

import re

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
from django.contrib.auth.hashers import MD5PasswordHasher
from django.core.cache import cache

from accounts import invitations
from accounts.models import Invitation, Team, User
from tests.accounts.oidc_provider import running_provider
from tests.factories import make_user, page_text

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _fresh_throttles(db):
    cache.clear()  # the throttles count in the cache; each test starts from none
    yield
    cache.clear()


@pytest.fixture
def hashes(monkeypatch):
    """How many password hashes the server computed (each is a full PBKDF2 in production)."""
    calls = []
    real = MD5PasswordHasher.verify

    def counting(self, password, encoded):
        calls.append(1)
        return real(self, password, encoded)

    monkeypatch.setattr(MD5PasswordHasher, "verify", counting)
    return calls


def sign_in(client, email, password, path="/accounts/login/", **extra):
    return client.post(path, {"login": email, "password": password}, **extra)


def signed_in(client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).email if user_id else None


# --- throttles ------------------------------------------------------------------------


def test_wrong_passwords_for_one_account_are_stopped_after_five(client, hashes):
    make_user("dora@example.com")
    for _ in range(5):
        r = sign_in(client, "dora@example.com", "wrong guess")
        assert r.status_code == 200 and signed_in(client) is None
    assert len(hashes) == 5
    r = sign_in(client, "dora@example.com", PASSWORD)  # the right one, too late
    assert signed_in(client) is None
    assert "Too many failed login attempts" in page_text(r.content)
    for _ in range(50):
        sign_in(client, "dora@example.com", "wrong guess")
    assert len(hashes) == 5  # a blocked attempt costs no hash


def test_one_address_guessing_many_accounts_is_stopped_per_ip(client, hashes):
    for n in range(12):
        make_user(f"p{n}@example.com")
    for n in range(10):
        sign_in(client, f"p{n}@example.com", "wrong guess")
    r = sign_in(client, "p11@example.com", PASSWORD)
    assert signed_in(client) is None
    assert "Too many failed login attempts" in page_text(r.content)
    other = client.__class__(REMOTE_ADDR="203.0.113.9")  # another address is not blocked
    sign_in(other, "p11@example.com", PASSWORD)
    assert signed_in(other) == "p11@example.com"


def test_a_correct_sign_in_does_not_reset_the_count_for_an_attacker(client):
    make_user("eve@example.com")
    for _ in range(4):
        sign_in(client, "eve@example.com", "wrong guess")
    sign_in(client, "eve@example.com", PASSWORD)
    assert signed_in(client) == "eve@example.com"


def test_the_admin_sign_in_is_the_same_throttled_form(client, hashes):
    make_user("root@example.com", is_staff=True, is_superuser=True)
    r = client.get("/admin/login/?next=/admin/")
    assert r.status_code == 302 and r["Location"].startswith("/accounts/login/")
    for _ in range(20):  # the stock admin form took passwords; it no longer checks any
        r = client.post(
            "/admin/login/?next=/admin/", {"username": "root@example.com", "password": "x"}
        )
        assert r.status_code == 302 and signed_in(client) is None
    assert hashes == []
    for _ in range(5):
        sign_in(client, "root@example.com", "wrong guess", path="/accounts/login/?next=/admin/")
    sign_in(client, "root@example.com", PASSWORD, path="/accounts/login/?next=/admin/")
    assert signed_in(client) is None


def test_password_reset_mails_are_limited_per_address(client, mailoutbox):
    make_user("fay@example.com")
    for _ in range(6):
        r = client.post("/accounts/password/reset/", {"email": "fay@example.com"})
        assert r.status_code in (200, 302, 429)
    assert len(mailoutbox) == 3
    assert "/accounts/password/reset/key/" in mailoutbox[0].body


def test_password_reset_link_sets_a_new_password(client, mailoutbox):
    make_user("gus@example.com")
    client.post("/accounts/password/reset/", {"email": "gus@example.com"})
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mailoutbox[0].body)
    r = client.get(link.group(1), follow=True)
    form_path = r.redirect_chain[-1][0] if r.redirect_chain else link.group(1)
    new = "an entirely new passphrase"
    r = client.post(form_path, {"password1": new, "password2": new})
    assert r.status_code == 302
    sign_in(client, "gus@example.com", new)
    assert signed_in(client) == "gus@example.com"


def test_without_mail_set_up_password_reset_says_no_link_can_come(client, settings):
    """`make run`'s mail goes to the console: "Check your email" would be untrue."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    make_user("hal@example.com")
    page = page_text(client.get("/accounts/password/reset/").content)
    assert "cannot send email" in page and "Ask your admin" in page
    assert "Send the link" not in page  # no form that pretends to send
    r = client.post("/accounts/password/reset/", {"email": "hal@example.com"}, follow=True)
    page = page_text(r.content)
    assert "cannot send email" in page and "on its way" not in page


def test_with_mail_set_up_password_reset_sends_the_link(client, mailoutbox):
    make_user("ida@example.com")
    assert "Send the link" in page_text(client.get("/accounts/password/reset/").content)
    r = client.post("/accounts/password/reset/", {"email": "ida@example.com"}, follow=True)
    assert "on its way" in page_text(r.content) and len(mailoutbox) == 1


def test_open_sign_up_is_off(client):
    r = client.get("/accounts/signup/")
    assert "Sign-up is closed" in page_text(r.content)
    client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": "x" * 20, "password2": "x" * 20},
    )
    assert not User.objects.filter(email="new@example.com").exists()


def test_the_sign_in_page_keeps_the_look(client):
    r = client.get("/accounts/login/")
    html = r.content.decode()
    assert 'class="auth-card' in html and 'class="primary wide"' in html
    assert "sign up" not in page_text(html).lower()
    policy = dict(d.strip().split(" ", 1) for d in r.headers["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"


# --- invitations ----------------------------------------------------------------------


@pytest.fixture
def design(db):
    return Team.objects.create(name="Design")


def invite_link(team, email="ida@example.com", **kwargs) -> str:
    _, url = invitations.invite(email, team, by=None, **kwargs)
    return url.removeprefix("http://127.0.0.1:8000")


def test_an_admin_invites_by_email_and_the_person_joins_the_team(
    client, design, mailoutbox, django_capture_on_commit_callbacks
):
    admin = make_user("lead@example.com", is_staff=True, is_superuser=True)
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):  # the mail goes on commit
        r = client.post(
            "/admin/accounts/invitation/add/",
            {"email": "Ida@Example.com", "team": design.pk, "is_team_admin": "on"},
        )
    assert r.status_code == 302
    assert Invitation.objects.get().key_digest  # only the hash is kept
    body = mailoutbox[0].body
    assert mailoutbox[0].to == ["ida@example.com"] and "Design" in mailoutbox[0].subject
    path = re.search(r"https?://[^/\s]+(/accounts/invitation/\S+/)", body).group(1)
    assert path.split("/")[-2] not in Invitation.objects.get().key_digest

    guest = client.__class__()
    r = guest.get(path)
    assert r.status_code == 200 and "Join Design" in page_text(r.content)
    r = guest.post(path, {"name": "Ida", "password1": "short", "password2": "short"})
    assert r.status_code == 422 and not User.objects.filter(email="ida@example.com").exists()
    good = "a long enough passphrase"
    r = guest.post(path, {"name": "Ida", "password1": good, "password2": good})
    assert r.status_code == 302
    ida = User.objects.get(email="ida@example.com")
    assert ida.team == design and ida.is_team_admin and ida.name == "Ida"
    assert signed_in(guest) == "ida@example.com"
    assert client.__class__().get(path).status_code == 410  # used once


def test_an_expired_or_made_up_invitation_is_refused(client, design):
    path = invite_link(design)
    Invitation.objects.update(expires_at="2000-01-01T00:00Z")
    assert client.get(path).status_code == 410
    assert client.get("/accounts/invitation/not-a-real-key/").status_code == 410


def test_an_invitation_for_an_existing_account_joins_on_sign_in(client, design):
    make_user("jo@example.com")
    path = invite_link(design, "jo@example.com")
    r = client.get(path)
    assert "already an account" in page_text(r.content)
    sign_in(client, "jo@example.com", PASSWORD)
    assert User.objects.get(email="jo@example.com").team == design


# --- Google Workspace and OpenID Connect ------------------------------------------------


@pytest.fixture
def oidc(settings):
    """Two apps on one local provider: "google" (Workspace rules) and "keycloak"."""
    with running_provider() as provider:
        app = {"client_id": provider.client_id, "secret": "shh"}
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {
                "OAUTH_PKCE_ENABLED": True,
                "APPS": [
                    app
                    | {
                        "provider_id": "google",
                        "name": "Google",
                        "settings": {"server_url": provider.url, "google": True},
                    },
                    app
                    | {
                        "provider_id": "keycloak",
                        "name": "Keycloak",
                        "settings": {"server_url": provider.url},
                    },
                ],
            }
        }
        yield provider


def sign_in_with(client, provider, app: str, **claims):
    provider.claims = {"email_verified": True, "name": "Kim Lee"} | claims
    r = client.post(f"/accounts/oidc/{app}/login/")
    assert r.status_code == 302 and r["Location"].startswith(provider.url + "/authorize")
    assert "code_challenge=" in r["Location"]  # PKCE
    back = provider.authorize(r["Location"]).removeprefix("http://testserver")
    return client.get(back)


def test_google_workspace_account_lands_in_its_team(client, oidc):
    corp = Team.objects.create(name="Corp", sign_in_domain="Corp.Example")
    r = sign_in_with(client, oidc, "google", email="kim@corp.example", hd="corp.example")
    assert r.status_code == 302, page_text(r.content)
    kim = User.objects.get(email="kim@corp.example")
    assert kim.team == corp and kim.name == "Kim Lee" and not kim.has_usable_password()
    assert signed_in(client) == "kim@corp.example"
    assert oidc.token_requests[0]["code_verifier"]


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"email": "kim@gmail.com"}, "Personal Google accounts"),
        ({"email": "kim@other.example", "hd": "other.example"}, "other.example cannot"),
        ({"email": "kim@corp.example", "hd": "corp.example", "email_verified": False}, "confirm"),
    ],
)
def test_google_refuses_other_domains_server_side(client, oidc, claims, why):
    Team.objects.create(name="Corp", sign_in_domain="corp.example")
    r = sign_in_with(client, oidc, "google", **claims)
    assert r.status_code == 403 and why in page_text(r.content)
    assert not User.objects.filter(email=claims["email"]).exists()
    assert signed_in(client) is None


def test_an_existing_person_signs_in_with_google_into_their_account(client, oidc, team):
    alice = make_user("alice@corp.example", team=team)
    sign_in_with(client, oidc, "google", email="alice@corp.example", hd="corp.example")
    assert signed_in(client) == "alice@corp.example"
    assert User.objects.get(pk=alice.pk).team == team


def test_an_invitation_accepted_through_google(client, oidc, design):
    path = invite_link(design, "lin@corp.example")
    client.get(path)
    sign_in_with(client, oidc, "google", email="lin@corp.example", hd="corp.example")
    assert User.objects.get(email="lin@corp.example").team == design
    assert Invitation.objects.get().accepted_at is not None


def test_generic_oidc_joins_by_email_domain_and_otherwise_is_closed(client, oidc):
    ops = Team.objects.create(name="Ops", sign_in_domain="ops.example")
    sign_in_with(client, oidc, "keycloak", email="max@ops.example", sub="m1")
    assert User.objects.get(email="max@ops.example").team == ops
    stranger = client.__class__()
    r = sign_in_with(stranger, oidc, "keycloak", email="zed@elsewhere.example", sub="z1")
    assert not User.objects.filter(email="zed@elsewhere.example").exists()
    assert signed_in(stranger) is None and r.status_code in (200, 302)


def test_sign_in_page_offers_the_configured_providers(client, oidc):
    text = page_text(client.get("/accounts/login/").content)
    assert "Google" in text and "Keycloak" in text


# --- two-step sign-in -----------------------------------------------------------------


def totp_for(user) -> str:
    secret = "JBSWY3DPEHPK3PXP" * 2
    TOTP.activate(user, secret)
    return secret


def current_code(secret: str) -> str:
    import time

    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def test_a_totp_account_needs_its_code(client):
    user = make_user("ken@example.com")
    secret = totp_for(user)
    r = sign_in(client, "ken@example.com", PASSWORD)
    assert r.status_code == 302 and "/accounts/2fa/authenticate/" in r["Location"]
    assert signed_in(client) is None
    r = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert signed_in(client) is None
    client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert signed_in(client) == "ken@example.com"


def test_staff_can_be_required_to_set_up_two_step_sign_in(client, settings):
    settings.NANOWEB_REQUIRE_MFA_FOR_STAFF = True
    staff = make_user("sam@example.com", is_staff=True, is_superuser=True)
    client.force_login(staff)
    r = client.get("/admin/")
    assert r.status_code == 302 and r["Location"] == "/accounts/2fa/"
    assert client.get("/accounts/2fa/").status_code == 200  # the way out stays open
    totp_for(staff)
    assert client.get("/admin/").status_code == 200
    member = make_user("pat@example.com")
    client.force_login(member)
    assert client.get("/").status_code == 200  # only staff are held to it
    assert not Authenticator.objects.filter(user=member).exists()


def test_pages_that_show_a_secret_are_never_stored(client):
    user = make_user("una@example.com")
    client.force_login(user)
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    for path in ("/accounts/2fa/totp/activate/", "/accounts/login/", "/settings/api"):
        r = client.get(path)
        assert "no-store" in r.headers.get("Cache-Control", ""), path
