"""API tokens (create, shown once; revoke) and copy-paste examples for this instance.

Tokens belong to accounts; the page lives here because its examples name the models
this instance serves.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import tokens
from generations.models import ModelSpec

# The expiry picker's values as the form sends them ("" = never).
EXPIRY_VALUES = {str(days or ""): days for days, _label in tokens.EXPIRY_CHOICES}


@login_required
@never_cache  # a new token is shown on it, once: no browser or proxy may keep a copy
def api_page(request):
    issued, error = None, None
    if request.method == "POST":
        expiry = request.POST.get("expires_in_days", "")
        if expiry not in EXPIRY_VALUES:
            error = _("Pick an expiry from the list.")
        else:
            try:
                issued = tokens.create(
                    request.user,
                    request.POST.get("name", ""),
                    expires_in_days=EXPIRY_VALUES[expiry],
                )
            except ValueError as exc:
                error = str(exc)
    context = {
        "tokens": tokens.listing(request.user),
        "issued": issued,
        "error": error,
        "expiry_choices": [(d or "", label) for d, label in tokens.EXPIRY_CHOICES],
        "base_url": request.build_absolute_uri("/").rstrip("/"),
        "models": list(ModelSpec.objects.available().values_list("slug", flat=True)),
        "now": timezone.now(),
    }
    return render(request, "accounts/api.html", context, status=400 if error else 200)


@login_required
@require_POST
def revoke_token(request, pk: int):
    token = tokens.revoke(request.user, pk)
    if token is None:
        raise Http404("No such token among yours.")
    messages.success(
        request,
        _("The token '%(name)s' is revoked; calls with it now get 401.") % {"name": token.name},
    )
    return redirect("api-settings")
