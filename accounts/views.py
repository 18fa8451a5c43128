from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import alerts, limits, quotas, tokens, usage
from accounts.periods import month_start, quota_day

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
        raise Http404("Only the team's admins see the team's usage.")
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
    context = {
        "team_view": team_view,
        "month": usage.month(start, budget=budget, **owner),
        "ledger": page,
        "quota": quotas.summary(user) if start == month_start(quota_day()) else None,
        "members": usage.members(user.team, start) if team_view else None,
        "team_counter": counter,
        "team_left": team_left,
        "can_see_team": bool(user.team_id and (user.is_team_admin or user.is_staff)),
        "alert": alerts.current_for(user),
    }
    return render(request, "accounts/usage.html", context)


@login_required
def api_page(request):
    """API tokens (create, shown once; revoke) and copy-paste examples for this instance."""
    from generations.jobs import available_models  # accounts does not import generations

    issued, error = None, None
    if request.method == "POST":
        form = request.POST
        try:
            days = int(form.get("expires_in_days") or 0) or None
            if days is not None and days not in dict(tokens.EXPIRY_CHOICES):
                raise ValueError("Pick an expiry from the list.")
            issued = tokens.create(request.user, form.get("name", ""), expires_in_days=days)
        except ValueError as exc:
            error = "Pick an expiry from the list." if "invalid literal" in str(exc) else str(exc)
    base = request.build_absolute_uri("/").rstrip("/")
    context = {
        "tokens": tokens.listing(request.user),
        "issued": issued,
        "error": error,
        "expiry_choices": [(d or "", label) for d, label in tokens.EXPIRY_CHOICES],
        "base_url": base,
        "models": list(available_models().values_list("slug", flat=True)),
        "now": timezone.now(),
    }
    status = 400 if error else 200
    return render(request, "accounts/api.html", context, status=status)


@login_required
@require_POST
def revoke_token(request, pk: int):
    token = tokens.revoke(request.user, pk)
    if token is None:
        raise Http404("No such token among yours.")
    messages.success(request, f"The token '{token.name}' is revoked; calls with it now get 401.")
    return redirect("api-settings")
