"""The page-level live poller and what a job card can do (Retry)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts import quotas
from generations import batches, jobs, live
from generations.models import Batch, Generation
from generations.views.access import get_job_for_user

CARD = "generations/cards.html#job-card"


@login_required
@require_GET
def live_status(request):
    """Out-of-band swaps for the cards whose state changed, the navigation counter and,
    on a batch page, the batch's progress. The page sends ``cards=id:signature,…``."""
    result = live.poll(request.user, live.parse_cards(request.GET.get("cards", "")))
    parts = [render_to_string(CARD, {"job": j, "oob": True}, request) for j in result.changed]
    parts.append(
        render_to_string(
            "base.html#nav-generating", {"generating": result.in_flight, "oob": True}, request
        )
    )
    if result.any_finished and request.GET.get("quota"):
        parts.append(
            render_to_string(
                "generations/studio.html#quota-oob",
                {"quota": quotas.summary(request.user)},
                request,
            )
        )
    batch = _batch_from_query(request)
    if batch is not None and "after" in request.GET:
        started = live.started_since(
            batch, live.parse_id(request.GET["after"]), live.parse_ids(request.GET.get("shown"))
        )
        if started:
            parts.append(
                render_to_string("generations/batch.html#started-cards", {"jobs": started}, request)
            )
    if batch is not None:
        parts.append(
            render_to_string(
                "generations/batch.html#batch-progress",
                {"batch": batch, "progress": batches.progress(batch), "oob": True},
                request,
            )
        )
    return HttpResponse("".join(parts))


def _batch_from_query(request) -> Batch | None:
    pk = live.parse_id(request.GET.get("batch"))
    return Batch.objects.filter(pk=pk, user=request.user).first() if pk else None


@login_required
@require_POST
def job_cancel(request, pk):
    """An in-flight card's Cancel: the job stops before it is made and its money comes
    back (a request waiting at fal.ai or Replicate is called off there too)."""
    job = get_job_for_user(request, pk)
    if jobs.cancel_job(request.user, job.pk) is None:
        job = get_job_for_user(request, pk)
        error = _("It has already started, so it can no longer be cancelled.")
        if job.is_finished:
            error = _("It has already finished.")
        if not request.htmx:
            return HttpResponse(error, status=409, content_type="text/plain; charset=utf-8")
        return render(request, CARD, {"job": job, "cancel_error": error}, status=409)
    if not request.htmx:
        return redirect(reverse("generations:studio"))
    response = render(request, CARD, {"job": get_job_for_user(request, pk)})
    response.content += render_to_string(
        "base.html#nav-generating",
        {"generating": live.in_flight_count(request.user), "oob": True},
        request,
    ).encode()
    return response


@login_required
@require_POST
def job_retry(request, pk):
    """A failed card's Retry: a new job with the same settings, charged as usual."""
    job = get_job_for_user(request, pk)
    if job.status not in (Generation.FAILED, Generation.CANCELLED):
        return HttpResponse(
            _("Only a job that made no image can be retried."),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    try:
        new = jobs.retry(request.user, [job])[0]
    except jobs.SubmitError as exc:
        job = get_job_for_user(request, pk)
        ctx = {"job": job, "retry_error": exc.message}
        return render(request, CARD, ctx, status=422)
    if not request.htmx:
        return redirect(
            reverse("generations:batch", args=[new.batch_id])
            if new.batch_id
            else reverse("generations:studio")
        )
    live.annotate_positions([new])
    response = render(request, CARD, {"job": new, "retried": True})
    response.content += render_to_string(
        "base.html#nav-generating",
        {"generating": live.in_flight_count(request.user), "oob": True},
        request,
    ).encode()
    return response
