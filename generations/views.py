from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.timesince import timesince
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from accounts import alerts, limits, quotas
from generations import jobs, live
from generations.forms import StudioForm
from generations.models import Generation, Image, ModelSpec

RECENT_CARDS = 24


def _get_generation_for_user(request, pk) -> Generation:
    return get_object_or_404(
        Generation.objects.select_related("model", "image", "route__model"),
        pk=pk,
        user=request.user,
    )


def _get_image_for_user(request, pk) -> Image:
    """The person's own images, and those a teammate shared with the team."""
    return get_object_or_404(Image.objects.visible_to(request.user), generation_id=pk)


def _studio_context(request, form: StudioForm, params=None) -> dict:
    """Everything the studio renders; the estimate follows ``params`` (query values) or
    else the form itself, so every render of the form shows what it would cost."""
    mine = limits.for_user(request.user)
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
        }
    quota = quotas.summary(request.user)
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
        "jobs": live.annotate_positions(
            Generation.objects.for_user(request.user)
            .exclude(image__deleted_at__isnull=False)  # deleted in the gallery
            .select_related("model", "image", "route__model")[:RECENT_CARDS]
        ),
        "sandbox_only": bool(models) and all(m.is_sandbox for m in models),
        "alert": alerts.current_for(request.user),
        "parent": form.parent_image,
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
    form = StudioForm(initial=request.GET.dict(), user=request.user)
    return render(request, "generations/studio.html", _studio_context(request, form))


@login_required
@require_POST
def generate(request):
    form = StudioForm(request.POST, request.FILES, user=request.user)
    new_jobs = []
    if form.is_valid() and not form.cleaned_data["again"]:
        earlier = jobs.recent_duplicates(request.user, form.job_request)
        if earlier:
            return _offer_earlier(request, form, earlier)
    if form.is_valid():
        try:
            new_jobs = jobs.submit(request.user, form.job_request)
        except jobs.SubmitError as exc:
            form.add_error(exc.field, exc.message)
    ctx = _studio_context(request, form)
    if not request.htmx:
        return render(request, "generations/studio.html", ctx, status=200 if new_jobs else 400)
    if not new_jobs:
        # 422 keeps the form in place; htmx is told to swap it anyway (see base.html).
        return render(request, "generations/studio.html#studio-form", ctx, status=422)
    kept = StudioForm(initial=_keep_settings(form))
    ctx = {**_studio_context(request, kept), "new_jobs": live.annotate_positions(new_jobs)}
    return render(request, "generations/studio.html#submitted", ctx)


def _offer_earlier(request, form: StudioForm, earlier: list[Generation]):
    """The same request was made moments ago: offer its images at no cost. Only the
    notice is swapped in, so the form keeps everything, reference files included."""
    ago = timesince(earlier[0].created)
    ago = "moments ago" if ago.startswith("0\xa0") else f"{ago} ago"
    ctx = {**_studio_context(request, form), "earlier": earlier, "earlier_ago": ago}
    if not request.htmx:
        return render(request, "generations/studio.html", ctx)
    response = render(request, "generations/studio.html#duplicate-notice", ctx)
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
    }


@login_required
@require_GET
def options(request):
    """The pickers that depend on the model (sizes, ratios, counts) plus the estimate."""
    form = StudioForm(initial=request.GET.dict())
    ctx = _studio_context(request, form, request.GET)
    return render(request, "generations/studio.html#options-and-estimate", ctx)


@login_required
@require_GET
def estimate(request):
    form = StudioForm(initial=request.GET.dict())
    ctx = _studio_context(request, form, request.GET)
    return render(request, "generations/studio.html#estimate", ctx)


def _estimate(model: ModelSpec | None, params) -> dict:
    """Worst-case cost of what the form describes; never raises on odd input."""
    if model is None:
        return {"estimate": None}
    size = params.get("image_size") or model.default_size()
    if size not in model.sizes:
        size = model.default_size()
    count = _bounded_int(params.get("count"), 1, model.max_images_per_request)
    refs = _bounded_int(params.get("ref_count"), 0, model.max_reference_images)
    prompt_chars = _bounded_int(params.get("prompt_chars"), 0, 100_000)
    req = jobs.JobRequest(
        model=model,
        prompt="x" * prompt_chars,
        aspect_ratio="1:1",
        image_size=size,
        count=count,
        references=[None] * refs,
    )
    try:
        per_image = jobs.estimate_per_image(req)
    except jobs.SubmitError as exc:
        return {"estimate": None, "estimate_error": exc.message}
    return {"estimate": per_image * count, "estimate_count": count}


def _bounded_int(value, low: int, high: int) -> int:
    try:
        return min(high, max(low, int(value)))
    except (TypeError, ValueError):
        return low


@login_required
@require_GET
def image_file(request, pk):
    image = _get_image_for_user(request, pk)
    return _private_file(
        image.file,
        image.mime_type,
        request.GET.get("download") == "1",
        f"nanoweb-{image.generation_id}.{image.file.name.rsplit('.', 1)[-1]}",
    )


@login_required
@require_GET
def image_thumbnail(request, pk):
    image = _get_image_for_user(request, pk)
    return _private_file(image.thumbnail, "image/webp", False, None)


def _private_file(field, mime: str, download: bool, filename: str | None) -> HttpResponse:
    try:
        handle = field.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The file is missing from storage.") from exc
    response = FileResponse(handle, content_type=mime, as_attachment=download, filename=filename)
    response["Cache-Control"] = "private, max-age=86400, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response
