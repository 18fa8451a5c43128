"""The cost advisor for a team's admins (``/usage/advice``): what the team's images cost
over a period, what they would have cost on each channel, and what the team can change.
The instance-wide page for admins is :mod:`generations.admin_advisor`."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from generations import advisor


class PeriodForm(forms.Form):
    """The advisor's period: quota days, both inclusive (default: last month)."""

    start = forms.DateField(
        label=gettext_lazy("From"), widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(label=gettext_lazy("To"), widget=forms.DateInput(attrs={"type": "date"}))

    MAX_DAYS = 366

    @classmethod
    def from_query(cls, query) -> PeriodForm:
        if "start" in query or "end" in query:
            return cls(query)
        start, end = advisor.last_month()
        return cls({"start": start.isoformat(), "end": end.isoformat()})

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end < start:
                raise ValidationError(_("The end date is before the start date."))
            if end - start > dt.timedelta(days=self.MAX_DAYS):
                raise ValidationError(_("Choose a period of at most a year."))
        return data


def csv_response(advice: advisor.Advice, table: str) -> HttpResponse:
    response = HttpResponse(advisor.to_csv(advice, table), content_type="text/csv; charset=utf-8")
    name = f"nanoweb-advice-{table}-{advice.start}-{advice.end}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


def _team_for(user):
    """The team whose advice ``user`` may see (404 for anyone who is not its admin)."""
    if not (user.team_id and (user.is_team_admin or user.is_staff)):
        raise Http404(_("Only the team's admins see the team's advice."))
    return user.team


@login_required
@require_GET
def team_advice(request):
    team = _team_for(request.user)
    form = PeriodForm.from_query(request.GET)
    if not form.is_valid():
        return render(request, "generations/advisor.html", {"form": form}, status=400)
    advice = advisor.advise(form.cleaned_data["start"], form.cleaned_data["end"], team=team)
    table = request.GET.get("table")
    if table is not None:
        if table not in advisor.TEAM_TABLES:
            raise Http404(_("There is no such table."))
        return csv_response(advice, table)
    context = {
        "form": form,
        "advice": advice,
        "team": team,
        "recommendations": advisor.for_team(advice),
        "query": f"start={advice.start}&end={advice.end}",
    }
    return render(request, "generations/advisor.html", context)
