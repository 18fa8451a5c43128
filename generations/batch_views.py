"""Batches pages, the page-level live poller and Retry on failure cards."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from accounts import limits, quotas
from accounts.models import format_usd
from generations import batches, jobs, live, zips
from generations.models import ASPECT_RATIOS, Batch, Generation, ModelSpec


def _get_batch_for_user(request, pk) -> Batch:
    return get_object_or_404(Batch, pk=pk, user=request.user)


def _get_job_for_user(request, pk) -> Generation:
    return get_object_or_404(
        Generation.objects.select_related("model", "parent_image").prefetch_related("references"),
        pk=pk, user=request.user,
    )


# --- Live status: one request per page for every card in flight ---


@login_required
@require_GET
def live_status(request):
    """Out-of-band swaps for the cards whose state changed, the navigation counter and,
    on a batch page, the batch's progress. The page sends ``cards=id:signature,…``."""
    result = live.poll(request.user, live.parse_cards(request.GET.get("cards", "")))
    parts = [render_to_string("generations/studio.html#job-card", {"job": j, "oob": True},
                              request) for j in result.changed]
    parts.append(render_to_string("base.html#nav-generating",
                                  {"generating": result.in_flight, "oob": True}, request))
    if result.any_finished and request.GET.get("quota"):
        parts.append(render_to_string("generations/studio.html#quota-oob",
                                      {"quota": quotas.summary(request.user)}, request))
    batch = _batch_from_query(request)
    if batch is not None and "after" in request.GET:
        started = live.started_since(batch, live.parse_id(request.GET["after"]),
                                     live.parse_ids(request.GET.get("shown")))
        if started:
            parts.append(render_to_string("generations/batch.html#started-cards",
                                          {"jobs": started}, request))
    if batch is not None:
        parts.append(render_to_string("generations/batch.html#batch-progress",
                                      {"batch": batch, "progress": batches.progress(batch),
                                       "oob": True}, request))
    return HttpResponse("".join(parts))


def _batch_from_query(request) -> Batch | None:
    pk = live.parse_id(request.GET.get("batch"))
    return Batch.objects.filter(pk=pk, user=request.user).first() if pk else None


@login_required
@require_POST
def job_retry(request, pk):
    """A failed card's Retry: a new job with the same settings, charged as usual."""
    job = _get_job_for_user(request, pk)
    if job.status not in (Generation.FAILED, Generation.CANCELLED):
        return HttpResponse("Only a job that made no image can be retried.", status=400,
                            content_type="text/plain; charset=utf-8")
    try:
        new = jobs.retry(request.user, [job])[0]
    except jobs.SubmitError as exc:
        job = _get_job_for_user(request, pk)
        ctx = {"job": job, "retry_error": exc.message}
        return render(request, "generations/studio.html#job-card", ctx, status=422)
    if not request.htmx:
        return redirect(reverse("generations:batch", args=[new.batch_id]) if new.batch_id
                        else reverse("generations:studio"))
    live.annotate_positions([new])
    response = render(request, "generations/studio.html#job-card", {"job": new, "retried": True})
    response.content += render_to_string(
        "base.html#nav-generating",
        {"generating": live.in_flight_count(request.user), "oob": True}, request).encode()
    return response


# --- Batches ---


class BatchForm(forms.Form):
    name = forms.CharField(max_length=200, required=False,
                           widget=forms.TextInput(attrs={"placeholder": "e.g. Spring catalogue"}))
    prompts = forms.CharField(required=False, widget=forms.Textarea(attrs={
        "rows": 8, "placeholder": "A red fox in the snow\nA lighthouse at dusk\n…"}))
    csv_file = forms.FileField(required=False, label="or a CSV file")
    csv_text = forms.CharField(required=False, widget=forms.HiddenInput)
    model = forms.ModelChoiceField(queryset=ModelSpec.objects.none(), to_field_name="slug",
                                   empty_label=None)
    aspect_ratio = forms.ChoiceField(choices=[(a, a) for a in ASPECT_RATIOS], initial="1:1")
    image_size = forms.ChoiceField(required=False, label="Size", choices=[
        ("", "Model default"), ("1K", "1K"), ("2K", "2K"), ("4K", "4K")])
    count = forms.TypedChoiceField(coerce=int, initial=1, label="Images per prompt",
                                   choices=[(n, str(n)) for n in range(1, 5)])

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mine = limits.for_user(user)
        allowed = [m.pk for m in jobs.available_models() if mine.allows_model(m)]
        self.fields["model"].queryset = jobs.available_models().filter(pk__in=allowed)
        self.fields["model"].label_from_instance = lambda m: m.label

    def clean_csv_file(self):
        upload = self.cleaned_data.get("csv_file")
        if upload and upload.size > batches.MAX_CSV_BYTES:
            raise forms.ValidationError(
                f"The CSV file is {upload.size // 1024:,} KB; the limit is "
                f"{batches.MAX_CSV_BYTES // 1024:,} KB.")
        return upload

    def plan(self, user) -> batches.Plan:
        """Parse and check every row (raises BatchError listing the bad ones)."""
        data = self.cleaned_data
        model = data["model"]
        size = data.get("image_size") or model.default_size()
        defaults = batches.Defaults(model=model, aspect_ratio=data["aspect_ratio"],
                                    image_size=size if model.sizes else None,
                                    count=data["count"])
        raw = data["csv_file"].read() if data.get("csv_file") else (
            data.get("csv_text") or "").encode()
        if raw:
            self.csv_source = raw.decode("utf-8-sig", errors="replace")
            models = list(self.fields["model"].queryset)
            return batches.check(user, batches.parse_csv(raw, defaults, models), csv_rows=True)
        return batches.check(user, batches.parse_lines(data.get("prompts", ""), defaults))


def _list_context(request, form) -> dict:
    return {"form": form, "batches": list(batches.batches_for(request.user)),
            "max_rows": batches.MAX_ROWS, "quota": quotas.summary(request.user)}


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
        return _render_step(request, "batch-form", {"form": form, "row_errors": exc.messages},
                            422)
    ctx = {"form": form, "plan": plan, "rows": list(zip(plan.rows, plan.per_row, strict=True)),
           "csv_source": getattr(form, "csv_source", ""),
           "quota": quotas.summary(request.user)}
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
        batch = batches.start(request.user, form.cleaned_data.get("name", ""), plan)
    except batches.BatchError as exc:
        return _render_step(request, "batch-form", {"form": form, "row_errors": exc.messages},
                            422)
    url = reverse("generations:batch", args=[batch.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@login_required
@require_GET
@vary_on_headers("HX-Request")
def batch_detail(request, pk):
    return _render_detail(request, _get_batch_for_user(request, pk))


def _render_detail(request, batch: Batch, status: int = 200):
    gens = live.annotate_positions(
        batch.generations.select_related("model", "image", "route__model").order_by("created")
    )
    ctx = {"batch": batch, "progress": batches.progress(batch), "jobs": gens}
    return render(request, "generations/batch.html", ctx, status=status)


@login_required
@require_POST
def batch_cancel(request, pk):
    batch = _get_batch_for_user(request, pk)
    cancelled, dropped = batches.cancel(request.user, batch)
    returned = sum(g.reserved_micros for g in cancelled)
    count = len(cancelled) + dropped
    if count:
        messages.success(request, f"Cancelled {count} image{'s' if count != 1 else ''} "
                         f"that had not started; {format_usd(returned)} returned to your budget.")
    else:
        messages.info(request, "Nothing was waiting to start, so nothing was cancelled.")
    return _back_to(request, batch)


@login_required
@require_POST
def batch_retry(request, pk):
    batch = _get_batch_for_user(request, pk)
    try:
        new = batches.retry_failed(request.user, batch)
    except batches.BatchError as exc:
        messages.error(request, " ".join(exc.messages))
        return _back_to(request, batch, status=422 if not request.htmx else 200)
    messages.success(request, f"Started {len(new)} new image{'s' if len(new) != 1 else ''} "
                     "for the ones that failed.")
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
    batch = _get_batch_for_user(request, pk)
    name = slugify(batch.name)[:50] or "batch"
    return zips.response(request, zips.stream(batches.zip_entries(batch)), f"nanoweb-{name}.zip")


