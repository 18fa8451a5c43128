"""Who may sign in, and how: the rules nanoweb adds to django-allauth.

- Open sign-up is off unless ``NANOWEB_OPEN_SIGNUP``: people join through an
  invitation (``accounts.invitations``) or through a provider for a team whose
  sign-in domain is theirs.
- Google sign-in is an OpenID Connect app flagged ``google``: only Google Workspace
  accounts (the ID token's ``hd`` claim, checked here on the server — the ``hd``
  parameter of the sign-in page is only a hint an attacker can remove) of a domain
  some team has, or of someone invited or already registered under that address.
  Source: https://developers.google.com/identity/openid-connect/openid-connect#an-id-tokens-payload
  ("hd: the domain associated with the Google Workspace or Cloud organization of the
  user … use it to restrict access to members of that domain").
- Any provider's address must be verified (``email_verified``) before it signs anyone
  in or creates an account.
- ``NANOWEB_REQUIRE_MFA_FOR_STAFF``: staff without a second factor are sent to set one
  up before any other page (``RequireMfaMiddleware``).

allauth throttles every sign-in form (``ACCOUNT_RATE_LIMITS``); the admin's sign-in
page redirects to the same form (``nanoweb/urls.py``).
"""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.models import Authenticator
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from accounts import invitations
from accounts.models import Team, User


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request) -> bool:
        return settings.NANOWEB_OPEN_SIGNUP

    def login(self, request, user) -> None:
        """Someone who followed an invitation for an account they already had joins its
        team when they sign in (with a password or a provider)."""
        super().login(request, user)
        invitation = invitations.pending(request)
        if (
            invitation
            and invitations.matches(invitation, user.email)
            and invitations.accept(invitation, user, request)
        ):
            messages.success(request, _("You joined %(team)s.") % {"team": invitation.team.name})


def _claims(sociallogin) -> dict:
    data = sociallogin.account.extra_data or {}
    claims = dict(data.get("id_token") or {})
    claims.update(data.get("userinfo") or {})
    return claims or dict(data)


def _verified(claims: dict) -> bool:
    value = claims.get("email_verified")
    return value is True or str(value).lower() == "true"


def _is_google(sociallogin) -> bool:
    app = getattr(sociallogin.provider, "app", None)
    return bool(app and (app.settings or {}).get("google"))


def _domain(sociallogin, claims: dict) -> str:
    """The domain that picks a team: Google's ``hd``, else the address's domain."""
    if _is_google(sociallogin):
        return str(claims.get("hd") or "").lower()
    return str(claims.get("email") or "").rpartition("@")[2].lower()


def _team_for(domain: str) -> Team | None:
    return Team.objects.filter(sign_in_domain=domain).first() if domain else None


def _refuse(request, message: str):
    page = render(
        request,
        "accounts/refused.html",
        {"title": _("You cannot sign in here"), "message": message},
        status=403,
    )
    raise ImmediateHttpResponse(page)


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request, sociallogin) -> None:
        claims = _claims(sociallogin)
        email = str(claims.get("email") or "").strip().lower()
        provider = sociallogin.provider.name
        if not email or not _verified(claims):
            _refuse(
                request,
                _(
                    "%(provider)s did not confirm an email address for this account, so "
                    "it cannot sign in. Sign in with your password, or ask your admin."
                )
                % {"provider": provider},
            )
        if not _is_google(sociallogin):
            return
        domain = _domain(sociallogin, claims)
        if not domain:
            _refuse(
                request,
                _(
                    "Personal Google accounts cannot sign in here. Use your work "
                    "(Google Workspace) account."
                ),
            )
        invitation = invitations.pending(request)
        known = (
            _team_for(domain)
            or (invitation and invitations.matches(invitation, email))
            or User.objects.filter(email__iexact=email).exists()
        )
        if not known:
            _refuse(
                request,
                _(
                    "Google accounts of %(domain)s cannot sign in here. Ask your admin "
                    "for an invitation."
                )
                % {"domain": domain},
            )

    def is_open_for_signup(self, request, sociallogin) -> bool:
        claims = _claims(sociallogin)
        invitation = invitations.pending(request)
        if invitation and invitations.matches(invitation, claims.get("email")):
            return True
        return settings.NANOWEB_OPEN_SIGNUP or _team_for(_domain(sociallogin, claims)) is not None

    def populate_user(self, request, sociallogin, data):
        user = super().populate_user(request, sociallogin, data)
        user.email = (user.email or "").lower()
        user.name = (data.get("name") or "").strip()[:150]
        return user

    def save_user(self, request, sociallogin, form=None):
        user = super().save_user(request, sociallogin, form)
        invitation = invitations.pending(request)
        if invitation and invitations.matches(invitation, user.email):
            invitations.accept(invitation, user, request)
        elif team := _team_for(_domain(sociallogin, _claims(sociallogin))):
            user.team = team
            user.save(update_fields=["team"])
        return user


# Pages a staff member without a second factor may still open: setting one up,
# signing out, and what those pages need.
MFA_SETUP_PREFIXES = ("/accounts/", "/static/", "/favicon.ico")


class RequireMfaMiddleware:
    """With ``NANOWEB_REQUIRE_MFA_FOR_STAFF``, staff set up a second factor first."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if (
            settings.NANOWEB_REQUIRE_MFA_FOR_STAFF
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and not request.path.startswith(MFA_SETUP_PREFIXES)
            and not request.session.get("nanoweb_mfa_ok")
        ):
            if not Authenticator.objects.filter(
                user=user, type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN]
            ).exists():
                messages.warning(
                    request,
                    _(
                        "Staff accounts need two-step sign-in here. Set up an "
                        "authenticator app or a security key to go on."
                    ),
                )
                return redirect(reverse("mfa_index"))
            request.session["nanoweb_mfa_ok"] = True
        return self.get_response(request)


class AccountPagesNoStoreMiddleware:
    """Sign-in pages show secrets (an authenticator's key, recovery codes, reset forms):
    no browser or proxy keeps a copy (``Cache-Control: no-store``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path.startswith("/accounts/"):
            add_never_cache_headers(response)
        return response
