from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache

from accounts import alerts, invitations, limits, preferences, quotas, usage
from accounts.forms import InvitationForm, PreferencesForm
from accounts.models import User

LEDGER_PAGE = 50


@login_required
def usage_page(request):
    """My spend this month (or any past month); ``?view=team`` for team admins."""
    try:
        start = usage.parse_month(request.GET.get("month"))
    except ValueError as exc:
        return render(request, "accounts/usage.html", {"error": str(exc)}, status=400)
    team_view = request.GET.get("view") == "team"
    user = request.user
    if team_view and not (user.team_id and (user.is_team_admin or user.is_staff)):
        raise Http404(_("Only the team's admins see the team's usage."))
    if team_view:
        owner = {"team": user.team}
        budget = user.team.shared_monthly_budget_micros
    else:
        owner = {"user": user}
        budget = limits.for_user(user).monthly_budget
    counter = usage.team_counter(user.team, start) if team_view else None
    team_left = None
    if counter is not None and budget is not None:
        team_left = max(0, budget - counter.micros_spent - counter.micros_reserved)
    elif team_view and budget is not None:
        team_left = budget
    page = Paginator(usage.ledger(start, **owner), LEDGER_PAGE).get_page(request.GET.get("page"))
    month = usage.month(start, budget=budget, **owner)
    quota = quotas.summary(user) if month.is_current else None
    if quota is not None and not team_view and quota.budget_room.shared:
        month = usage.bind_to_team(month, user.team, quota.team_budget)
    context = {
        "team_view": team_view,
        "month": month,
        "ledger": page,
        "quota": quota,
        "members": usage.members(user.team, start) if team_view else None,
        "team_counter": counter,
        "team_left": team_left,
        "can_see_team": bool(user.team_id and (user.is_team_admin or user.is_staff)),
        "alert": alerts.current_for(user),
    }
    return render(request, "accounts/usage.html", context)


@login_required
def preferences_page(request):
    """Language and time zone, remembered on the account (empty: follow the browser)."""
    user = request.user
    browser_zone = preferences.browser_zone(request)
    form = PreferencesForm(request.POST or None, instance=user, browser_zone=browser_zone)
    if request.method == "POST" and form.is_valid():
        form.save()
        language = user.language or translation.get_language_from_request(request)
        translation.activate(language)
        messages.success(request, _("Saved: nanoweb speaks and tells the time your way."))
        target = request.POST.get("next") or ""
        if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
            target = "preferences"
        response = redirect(target)
        if user.language:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME, user.language, max_age=365 * 86400, samesite="Lax"
            )
        else:
            response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
        return response
    status = 400 if request.method == "POST" else 200
    context = {"form": form, "next": request.GET.get("next", ""), "browser_zone": browser_zone}
    return render(request, "accounts/preferences.html", context, status=status)


class _Taken(Exception):
    """Someone used the invitation a moment ago."""


@never_cache
def invitation(request, key: str):
    """Join a team from an invitation's link: choose a password, or use the provider."""
    found = invitations.find(key)
    if found is None or not found.is_usable:
        message = _(
            "This invitation link has expired or has already been used. Ask your admin "
            "to send a new one."
        )
        context = {"title": _("This invitation cannot be used"), "message": message}
        return render(request, "accounts/refused.html", context, status=410)
    team = found.team.name
    if request.user.is_authenticated:
        if invitations.matches(found, request.user.email):
            if invitations.accept(found, request.user, request):
                messages.success(request, _("You joined %(team)s.") % {"team": team})
            return redirect("generations:studio")
        message = _(
            "You are signed in as %(current)s, but this invitation is for %(email)s. Sign "
            "out first, then open the link again."
        ) % {"current": request.user.email, "email": found.email}
        context = {"title": _("This invitation is for someone else"), "message": message}
        return render(request, "accounts/refused.html", context, status=409)
    invitations.stash(request, found)
    existing = User.objects.filter(email__iexact=found.email).exists()
    form = InvitationForm(request.POST or None, email=found.email)
    if request.method == "POST" and not existing and form.is_valid():
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    email=found.email,
                    password=form.cleaned_data["password1"],
                    name=form.cleaned_data["name"].strip(),
                )
                if not invitations.accept(found, user, request):
                    raise _Taken
        except (IntegrityError, _Taken):
            messages.error(request, _("This invitation has just been used. Sign in instead."))
            return redirect("account_login")
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
        messages.success(request, _("Welcome to %(team)s.") % {"team": team})
        return redirect("generations:studio")
    context = {
        "invitation": found,
        "form": form,
        "existing": existing,
        "title": _("Join %(team)s") % {"team": team},
    }
    return render(request, "accounts/invitation.html", context, status=422 if form.errors else 200)
