"""The objects a person may reach by id: everything else is a 404, never a 403 that
would confirm the id exists. Every view fetches through these."""

from __future__ import annotations

from django.shortcuts import get_object_or_404

from generations.models import Batch, Generation, Image


def get_job_for_user(request, pk) -> Generation:
    """One of the person's own jobs."""
    return get_object_or_404(
        Generation.objects.select_related("model", "parent_image").prefetch_related("references"),
        pk=pk,
        user=request.user,
    )


def get_batch_for_user(request, pk) -> Batch:
    return get_object_or_404(Batch, pk=pk, user=request.user)


def get_visible_image(request, pk) -> Image:
    """An image this person may see: their own, or one a teammate shared (``pk`` is the
    generation's id, as in the URLs)."""
    return get_object_or_404(
        Image.objects.visible_to(request.user).select_related("generation__model", "user"),
        generation_id=pk,
    )


def get_own_image(request, pk) -> Image:
    """An image this person may change (star, share, delete): their own, not deleted."""
    return get_object_or_404(
        Image.objects.owned_by(request.user).select_related("generation__model"),
        generation_id=pk,
    )
