"""The studio: the form, its live estimate and pickers, and Generate."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts import alerts, limits, quotas
from generations import jobs, live
from generations.forms import StudioForm
from generations.models import Generation, ModelSpec

RECENT_CARDS = 24


def _form_context(request, form: StudioForm, mine: limits.EffectiveLimits, params=None) -> dict:
    """What the form renders: pickers, estimate and quota. The estimate follows ``params``
    (query values) or else the form itself, so every render shows what it would cost."""
    models = list(form.fields["model"].queryset)
    for m in models:
        m.allowed = mine.allows_model(m)
    selected = _selected_model(form, [m for m in models if m.allowed] or models)
    if params is None:
        values = form.data if form.is_bound else form.initial
        params = {
            "image_size": values.get("image_size"),
            "count": values.get("count"),
            "prompt_chars": len((values.get("prompt") or "").strip()),
            "ref_count": (len(request.FILES.getlist("references")) if form.is_bound else 0)
            + (1 if form.parent_image else 0),
            "grounding": values.get("grounding"),
        }
    quota = quotas.summary(request.user, mine=mine)
    estimate = _estimate(selected, params)
    return {
        **estimate,
        "left_after": _left_after(quota, estimate.get("estimate")),
        "form": form,
        "models": models,
        "selected": selected,
        "sizes": _choices(selected.sizes if selected else [], mine.allows_size),
        "counts": _choices(
            range(1, (selected.max_images_per_request if selected else 4) + 1),
            lambda n: mine.max_per_request is None or n <= mine.max_per_request,
        ),
        "quota": quota,
        "parent": form.parent_image,
    }


def _page_context(request, form: StudioForm, mine: limits.EffectiveLimits) -> dict:
    """The whole studio page: the form, the recent cards and the banners."""
    ctx = _form_context(request, form, mine)
    recent = (
        Generation.objects.for_user(request.user)
        .exclude(image__deleted_at__isnull=False)  # deleted in the gallery
        .select_related("model", "image", "route__model")[:RECENT_CARDS]
    )
    models = ctx["models"]
    return {
        **ctx,
        "jobs": live.annotate_positions(recent),
        "sandbox_only": bool(models) and all(m.is_sandbox for m in models),
        "alert": alerts.current_for(request.user),
    }


def _choices(values, allowed) -> list[tuple[str, bool]]:
    """(value, allowed by this person's limits) pairs; the form disables the rest."""
    return [(str(v), allowed(v)) for v in values]


def _left_after(quota: quotas.QuotaSummary, estimate: int | None) -> int | None:
    left = quota.budget_room.left  # the person's budget or the team's shared one
    if estimate is None or left is None:
        return None
    return left - estimate


def _selected_model(form: StudioForm, models: list[ModelSpec]) -> ModelSpec | None:
    slug = form.data.get("model") if form.is_bound else form.initial.get("model")
    return next((m for m in models if m.slug == slug), models[0] if models else None)


@login_required
@vary_on_headers("HX-Request")
def studio(request):
    mine = limits.for_user(request.user)
    form = StudioForm(initial=request.GET.dict(), user=request.user)
    return render(request, "generations/studio.html", _page_context(request, form, mine))


def _no_autofocus(form: StudioForm) -> StudioForm:
    form.fields["prompt"].widget.attrs.pop("autofocus", None)
    return form


@login_required
@require_POST
def generate(request):
    mine = limits.for_user(request.user)
    form = StudioForm(request.POST, request.FILES, user=request.user)
    new_jobs = []
    if form.is_valid() and not form.cleaned_data["again"]:
        earlier = jobs.recent_duplicates(request.user, form.job_request)
        if earlier:
            jobs.offer_earlier(request.user, form.job_request, earlier)
            return _offer_earlier(request, form, mine, earlier)
    if form.is_valid() and form.cleaned_data["again"]:
        jobs.decline_offer(request.user, form.job_request)
    if form.is_valid():
        try:
            new_jobs = jobs.submit(request.user, form.job_request, mine)
        except jobs.SubmitError as exc:
            form.add_error(exc.field, exc.message)
    if not request.htmx:
        ctx = _page_context(request, form, mine)
        return render(request, "generations/studio.html", ctx, status=200 if new_jobs else 400)
    # A form swapped in by htmx does not take the focus: autofocus would scroll a phone
    # back up to the prompt, away from the error or the new cards.
    if not new_jobs:
        # 422 keeps the form in place; htmx is told to swap it anyway (see base.html).
        _no_autofocus(form)
        ctx = _form_context(request, form, mine)
        return render(request, "generations/studio.html#studio-form", ctx, status=422)
    kept = _no_autofocus(StudioForm(initial=_keep_settings(form)))
    ctx = {**_form_context(request, kept, mine), "new_jobs": live.annotate_positions(new_jobs)}
    return render(request, "generations/studio.html#submitted", ctx)


def _offer_earlier(request, form: StudioForm, mine, earlier: list[Generation]):
    """The same request was made moments ago: offer its images at no cost. Only the
    notice is swapped in, so the form keeps everything, reference files included."""
    ago = timesince(earlier[0].created)
    ago = _("moments ago") if ago.startswith("0\xa0") else _("%(time)s ago") % {"time": ago}
    extra = {"earlier": earlier, "earlier_ago": ago}
    if not request.htmx:
        return render(
            request, "generations/studio.html", {**_page_context(request, form, mine), **extra}
        )
    response = render(
        request,
        "generations/studio.html#duplicate-notice",
        {**_form_context(request, form, mine), **extra},
    )
    response["HX-Retarget"] = "#duplicate-notice"
    response["HX-Reswap"] = "outerHTML"
    return response


def _keep_settings(form: StudioForm) -> dict:
    data = form.cleaned_data
    return {
        "prompt": data.get("prompt"),
        "model": data["model"].slug,
        "aspect_ratio": data["aspect_ratio"],
        "image_size": data.get("image_size"),
        "count": data["count"],
        "thinking_level": data.get("thinking_level"),
        "grounding": "on" if data.get("grounding") else "",
    }


@login_required
@require_GET
def options(request):
    """The pickers that depend on the model (sizes, ratios, counts) plus the estimate."""
    return _form_part(request, "options-and-estimate")


@login_required
@require_GET
def estimate(request):
    return _form_part(request, "estimate")


def _form_part(request, partial: str):
    """One part of the form, re-rendered as the person changes it (no recent cards)."""
    form = StudioForm(initial=request.GET.dict())
    ctx = _form_context(request, form, limits.for_user(request.user), request.GET)
    return render(request, f"generations/studio.html#{partial}", ctx)


def _estimate(model: ModelSpec | None, params) -> dict:
    """Worst-case cost of what the form describes; never raises on odd input."""
    if model is None:
        return {"estimate": None}
    size = params.get("image_size") or model.default_size()
    if size not in model.sizes:
        size = model.default_size()
    count = _bounded_int(params.get("count"), 1, model.max_images_per_request)
    try:
        per_image = jobs.estimate_per_image(
            model,
            image_size=size,
            prompt_chars=_bounded_int(params.get("prompt_chars"), 0, 100_000),
            references=_bounded_int(params.get("ref_count"), 0, model.max_reference_images),
            grounding=model.grounding and params.get("grounding") in ("on", "true", "1", True),
        )
    except jobs.SubmitError as exc:
        return {"estimate": None, "estimate_error": exc.message}
    return {"estimate": per_image * count, "estimate_count": count}


def _bounded_int(value, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value)))
    except (TypeError, ValueError):
        return low
