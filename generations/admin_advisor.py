"""The cost advisor in the admin (``/admin/generations/advisor/``): the whole instance's
spend over a period, what it would have cost on each channel, route health and advice.

Importing this module is all it takes (``generations.admin`` does): it adds its URL to
the admin site's own, ahead of the model pages. A proxy model would need a migration
and a permission row for a page that shows data of models that already have both.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.translation import gettext as _

from accounts import billing
from generations import advisor
from generations.views.advisor import PeriodForm, csv_response

# Who may see it: whoever may read the ledger (the billing report's readers).
PERMISSION = "accounts.view_ledgerentry"


def advisor_view(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    form = PeriodForm.from_query(request.GET)
    context = {**admin.site.each_context(request), "title": _("Cost advisor"), "form": form}
    if not form.is_valid():
        return TemplateResponse(request, "admin/generations/advisor.html", context, status=400)
    advice = advisor.advise(form.cleaned_data["start"], form.cleaned_data["end"])
    table = request.GET.get("table")
    if table is not None:
        if table not in advisor.TABLES:
            raise Http404(_("There is no such table."))
        return csv_response(advice, table)
    context.update(
        advice=advice,
        billing_net=billing.ledger_net(advice.start, advice.end),
        query=f"start={advice.start}&end={advice.end}",
    )
    return TemplateResponse(request, "admin/generations/advisor.html", context)


def _with_advisor(get_urls):
    def urls():
        page = path(
            "generations/advisor/", admin.site.admin_view(advisor_view), name="generations_advisor"
        )
        return [page, *get_urls()]

    return urls


if not getattr(admin.site.get_urls, "with_advisor", False):  # imported once per process
    admin.site.get_urls = _with_advisor(admin.site.get_urls)
    admin.site.get_urls.with_advisor = True
