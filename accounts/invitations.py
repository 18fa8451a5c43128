"""Invitations: an admin asks someone by email to join a team.

The email carries a link with a random key; only its SHA-256 is stored, so a copy of
the database cannot be used to join. Following the link, the person sets a password,
or signs in with the team's provider (Google Workspace or OpenID Connect) — then the
invitation waits in their session until the provider sends them back. Accepting is a
conditional UPDATE, so one invitation makes at most one account.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Invitation, Team, User

SESSION_KEY = "nanoweb_invitation"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def link(key: str, base_url: str | None = None) -> str:
    base = base_url or settings.NANOWEB_BASE_URL
    return base.rstrip("/") + reverse("invitation", args=[key])


def invite(email: str, team: Team, *, by: User | None, is_team_admin: bool = False):
    """A new invitation and its link (shown once: the link is not stored)."""
    invitation = Invitation(email=email, team=team, is_team_admin=is_team_admin, invited_by=by)
    return invitation, issue(invitation)


def issue(invitation: Invitation, base_url: str | None = None) -> str:
    """Save the invitation with a fresh link, valid for NANOWEB_INVITATION_DAYS (an
    earlier link stops working), and return the link: on ``base_url`` (the address the
    admin uses) or NANOWEB_BASE_URL."""
    key = secrets.token_urlsafe(32)
    invitation.email = invitation.email.strip().lower()
    invitation.key_digest = _digest(key)
    invitation.expires_at = timezone.now() + timedelta(days=settings.NANOWEB_INVITATION_DAYS)
    invitation.save()
    return link(key, base_url)


def send(invitation: Invitation, url: str) -> None:
    inviter = invitation.invited_by
    who = (inviter.name or inviter.email) if inviter else _("An admin")
    subject = _("%(who)s invited you to %(team)s on nanoweb") % {
        "who": who,
        "team": invitation.team.name,
    }
    body = _(
        "%(who)s invited you to join the team %(team)s on nanoweb, the team's image "
        "studio.\n\nOpen this link to choose a password or to sign in with your work "
        "account:\n\n%(url)s\n\nThe link works once, until %(expires)s (UTC). If you did "
        "not expect this email, ignore it."
    ) % {
        "who": who,
        "team": invitation.team.name,
        "url": url,
        "expires": invitation.expires_at.strftime("%Y-%m-%d %H:%M"),
    }
    send_mail(subject, body, None, [invitation.email])


def find(key: str) -> Invitation | None:
    return Invitation.objects.select_related("team").filter(key_digest=_digest(key)).first()


def stash(request, invitation: Invitation) -> None:
    request.session[SESSION_KEY] = invitation.pk


def pending(request) -> Invitation | None:
    """The usable invitation this browser followed, if any."""
    pk = request.session.get(SESSION_KEY) if request is not None else None
    if not pk:
        return None
    invitation = Invitation.objects.select_related("team").filter(pk=pk).first()
    return invitation if invitation and invitation.is_usable else None


def matches(invitation: Invitation, email: str) -> bool:
    return invitation.email.lower() == (email or "").strip().lower()


def accept(invitation: Invitation, user: User, request=None) -> bool:
    """Join the invitation's team; False if someone used it first or it expired."""
    with transaction.atomic():
        taken = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, expires_at__gt=timezone.now()
        ).update(accepted_at=timezone.now(), accepted_by=user)
        if not taken:
            return False
        user.team = invitation.team
        user.is_team_admin = user.is_team_admin or invitation.is_team_admin
        user.save(update_fields=["team", "is_team_admin"])
    if request is not None:
        request.session.pop(SESSION_KEY, None)
    return True
