"""Gallery pages: the grid with filters and infinite scroll, one image's page with its
edit chain, star / share / delete with undo, and bulk delete and download."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRefresh

from generations import gallery, zips
from generations.models import Image
from generations.views.access import get_own_image, get_visible_image


def _render(request, template: str, ctx: dict, status: int = 200):
    return render(request, template, {**ctx, "img_base": gallery.image_base()}, status=status)


def _query_without_cursor(request) -> str:
    params = request.GET.copy()
    params.pop("cursor", None)
    return params.urlencode()


@login_required
@require_GET
@vary_on_headers("HX-Request")
def gallery_page(request):
    filters = gallery.GalleryFilters(request.GET)
    ctx = {
        "filters": filters,
        "query": _query_without_cursor(request),
        "images": [],
        "undo_minutes": settings.NANOWEB_UNDO_SECONDS // 60,
    }
    if not filters.is_valid():
        if request.htmx:  # 422: the filters have errors, and htmx shows the message
            return _render(request, "generations/gallery.html#results", ctx, status=422)
        return _render(request, "generations/gallery.html", ctx, status=400)
    qs = gallery.filtered(request.user, filters.cleaned_data)
    try:
        current = gallery.page(qs, request.GET.get("cursor"))
    except gallery.BadCursor as exc:
        ctx["page_error"] = str(exc)
        return _render(request, "generations/gallery.html", ctx, status=400)
    ctx.update(
        images=current.images,
        next_cursor=current.next_cursor,
        is_filtered=any(v for k, v in filters.cleaned_data.items() if k != "shared"),
        scope=filters.cleaned_data.get("shared") or "",
    )
    if request.htmx and request.GET.get("cursor"):
        return _render(request, "generations/gallery.html#next-page", ctx)
    if request.htmx and request.htmx.target == "gallery-results":
        return _render(request, "generations/gallery.html#results", ctx)
    return _render(request, "generations/gallery.html", ctx)


@login_required
@require_GET
def image_page(request, pk):
    image = get_visible_image(request, pk)
    newer, older = gallery.neighbours(image, request.user)
    ctx = {
        "image": image,
        "mine": image.can_change(request.user),
        "ancestors": gallery.ancestors(image, request.user),
        "children": gallery.children(image, request.user),
        "newer": newer,
        "older": older,
        "edit_url": gallery.edit_url(image.generation),
        "reuse_url": gallery.reuse_url(image.generation),
    }
    return _render(request, "generations/image.html", ctx)


@login_required
@require_POST
def image_star(request, pk):
    return _toggle(request, pk, "starred", "star-button")


@login_required
@require_POST
def image_share(request, pk):
    return _toggle(request, pk, "shared_with_team", "share-button")


def _toggle(request, pk, field: str, partial: str):
    """Flip one of the owner's yes/no choices and answer with its button."""
    image = get_own_image(request, pk)
    setattr(image, field, not getattr(image, field))
    image.save(update_fields=[field])
    return _render(request, f"generations/gallery.html#{partial}", {"image": image})


@login_required
@require_POST
def image_delete(request, pk):
    image = get_own_image(request, pk)
    gallery.soft_delete(request.user, [image.generation_id])
    if not request.htmx:
        minutes = settings.NANOWEB_UNDO_SECONDS // 60
        message = ngettext(
            "Image deleted. It can be restored from its page link for %(minutes)s minute.",
            "Image deleted. It can be restored from its page link for %(minutes)s minutes.",
            minutes,
        )
        messages.success(request, message % {"minutes": minutes})
        return redirect("generations:gallery")
    ctx = {"image": image, "undo_minutes": settings.NANOWEB_UNDO_SECONDS // 60}
    return _render(request, "generations/gallery.html#deleted-tile", ctx)


@login_required
@require_POST
def image_restore(request, pk):
    if not gallery.restore(request.user, [pk]):
        raise Http404("This image can no longer be restored.")
    image = get_own_image(request, pk)
    if not request.htmx:
        return redirect("generations:image", pk=pk)
    return _render(request, "generations/gallery.html#tile", {"image": image})


def _bulk_ids(request) -> list[str] | None:
    """The selected images' ids, or None when the selection is empty, too big or malformed."""
    source = request.POST if request.method == "POST" else request.GET
    ids = source.getlist("ids")
    if not ids or len(ids) > settings.NANOWEB_BULK_MAX_IMAGES:
        return None
    try:
        return [str(uuid.UUID(i)) for i in ids]
    except ValueError:
        return None


def _bulk_refused(request):
    most = settings.NANOWEB_BULK_MAX_IMAGES
    return HttpResponseBadRequest(
        ngettext(
            "Select between 1 and %(most)s image.", "Select between 1 and %(most)s images.", most
        )
        % {"most": most},
        content_type="text/plain; charset=utf-8",
    )


@login_required
@require_POST
def bulk_delete(request):
    ids = _bulk_ids(request)
    if ids is None:
        return _bulk_refused(request)
    deleted = list(gallery.owned(request.user, ids).values_list("generation_id", flat=True))
    gallery.soft_delete(request.user, deleted)
    ctx = {"deleted": deleted, "undo_minutes": settings.NANOWEB_UNDO_SECONDS // 60}
    if not request.htmx:
        message = ngettext("%(count)s image deleted.", "%(count)s images deleted.", len(deleted))
        messages.success(request, message % {"count": len(deleted)})
        return redirect("generations:gallery")
    return _render(request, "generations/gallery.html#bulk-deleted", ctx)


@login_required
@require_POST
def bulk_restore(request):
    ids = _bulk_ids(request)
    if ids is None:
        return _bulk_refused(request)
    gallery.restore(request.user, ids)
    if request.htmx:
        return HttpResponseClientRefresh()
    return redirect("generations:gallery")


@login_required
@require_POST  # a form POST: the selection and the CSRF token stay out of URLs and logs
def bulk_download(request):
    ids = _bulk_ids(request)
    if ids is None:
        return _bulk_refused(request)
    images = (
        Image.objects.visible_to(request.user)
        .filter(generation_id__in=ids)
        .order_by("-created", "-id")
    )
    if not images.exists():
        raise Http404("None of these images is available.")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    chunks = zips.stream(gallery.zip_members(images.iterator()))
    return zips.response(request, chunks, f"nanoweb-images-{stamp}.zip")
