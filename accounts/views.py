from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render

from accounts import alerts, limits, quotas, usage
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
