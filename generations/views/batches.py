"""Batches: many prompts at once (lines or CSV), a confirm step, progress, cancel,
retry and the zip of results."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from accounts import quotas
from accounts.models import format_usd
from generations import batches, live, zips
from generations.forms import BatchForm
from generations.models import Batch
from generations.views.access import get_batch_for_user


def _list_context(request, form) -> dict:
    return {
        "form": form,
        "batches": list(batches.batches_for(request.user)),
        "max_rows": batches.MAX_ROWS,
        "quota": quotas.summary(request.user),
    }


@login_required
@vary_on_headers("HX-Request")
def batch_list(request):
    form = BatchForm(request.user, initial={"model": request.GET.get("model")})
    return render(request, "generations/batches.html", _list_context(request, form))


@login_required
@require_POST
def batch_check(request):
    """Step 1 → 2: parse, validate and estimate, then show what would start (or why not)."""
    form = BatchForm(request.user, request.POST, request.FILES)
    if request.POST.get("edit"):  # "Change" on the confirm step: back to the filled form
        form.is_valid()
        form._errors = {}
        return _render_step(request, "batch-form", {"form": form}, 200)
    if not form.is_valid():
        return _render_step(request, "batch-form", {"form": form}, 422)
    try:
        plan = form.plan(request.user)
    except batches.BatchError as exc:
        return _render_step(request, "batch-form", {"form": form, "row_errors": exc.messages}, 422)
    ctx = {
        "form": form,
        "plan": plan,
        "rows": list(zip(plan.rows, plan.per_row, strict=True)),
        "csv_source": getattr(form, "csv_source", ""),
        "quota": quotas.summary(request.user),
    }
    return _render_step(request, "batch-confirm", ctx, 200)


def _render_step(request, partial: str, ctx: dict, status: int):
    if request.htmx:
        return render(request, f"generations/batches.html#{partial}", ctx, status=status)
    full = {**_list_context(request, ctx["form"]), **ctx, "step": partial}
    return render(request, "generations/batches.html", full, status=status)


@login_required
@require_POST
def batch_start(request):
    form = BatchForm(request.user, request.POST, request.FILES)
    if not form.is_valid():
        return _render_step(request, "batch-form", {"form": form}, 422)
    try:
        plan = form.plan(request.user)
        name = form.cleaned_data.get("name", "")
        batch = batches.start(request.user, name, plan, economy_mode=form.economy)
    except batches.BatchError as exc:
        return _render_step(request, "batch-form", {"form": form, "row_errors": exc.messages}, 422)
    url = reverse("generations:batch", args=[batch.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def batch_detail(request, pk):
    return _render_detail(request, get_batch_for_user(request, pk))


def _render_detail(request, batch: Batch, status: int = 200):
    gens = live.annotate_positions(
        batch.generations.select_related("model", "image", "route__model").order_by("created")
    )
    ctx = {"batch": batch, "progress": batches.progress(batch), "jobs": gens}
    return render(request, "generations/batch.html", ctx, status=status)


@login_required
@require_POST
def batch_cancel(request, pk):
    batch = get_batch_for_user(request, pk)
    cancelled, dropped = batches.cancel(request.user, batch)
    returned = sum(g.reserved_micros for g in cancelled)
    count = len(cancelled) + dropped
    if count and batch.economy:
        message = ngettext(
            "Cancelled %(count)s image at Google; %(returned)s returned to your budget.",
            "Cancelled %(count)s images at Google; %(returned)s returned to your budget.",
            count,
        )
        messages.success(request, message % {"count": count, "returned": format_usd(returned)})
    elif count:
        message = ngettext(
            "Cancelled %(count)s image that had not started; %(returned)s returned to your budget.",
            "Cancelled %(count)s images that had not started; %(returned)s returned to your "
            "budget.",
            count,
        )
        messages.success(request, message % {"count": count, "returned": format_usd(returned)})
    else:
        messages.info(request, _("Nothing was waiting to start, so nothing was cancelled."))
    return _back_to(request, batch)


@login_required
@require_POST
def batch_retry(request, pk):
    batch = get_batch_for_user(request, pk)
    try:
        expired_only = bool(request.POST.get("expired_only"))  # "run the rest now"
        new = batches.retry_failed(request.user, batch, expired_only=expired_only)
    except batches.BatchError as exc:
        messages.error(request, " ".join(exc.messages))
        return _back_to(request, batch, status=422 if not request.htmx else 200)
    if expired_only:
        message = ngettext(
            "Started %(count)s image at the normal price for the one Google did not make.",
            "Started %(count)s images at the normal price for the ones Google did not make.",
            len(new),
        )
        messages.success(request, message % {"count": len(new)})
        return _back_to(request, batch)
    message = ngettext(
        "Started %(count)s new image for the one that failed.",
        "Started %(count)s new images for the ones that failed.",
        len(new),
    )
    messages.success(request, message % {"count": len(new)})
    return _back_to(request, batch)


def _back_to(request, batch: Batch, status: int = 200):
    url = reverse("generations:batch", args=[batch.pk])
    if request.htmx:
        return HttpResponseClientRedirect(url)
    if status != 200:
        return _render_detail(request, batch, status)
    return redirect(url)


@login_required
@require_GET
def batch_zip(request, pk):
    """The batch's images and a manifest, streamed as the zip is written."""
    batch = get_batch_for_user(request, pk)
    name = slugify(batch.name, allow_unicode=True)[:50] or "batch"
    return zips.response(request, zips.stream(batches.zip_entries(batch)), f"nanoweb-{name}.zip")
