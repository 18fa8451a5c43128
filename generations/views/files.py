"""Image files and thumbnails, served privately to whoever may see the image."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse
from django.views.decorators.http import require_GET

from generations.views.access import get_visible_image


@login_required
@require_GET
def image_file(request, pk):
    image = get_visible_image(request, pk)
    return _private_file(
        image.file,
        image.mime_type,
        request.GET.get("download") == "1",
        f"nanoweb-{image.generation_id}.{image.file.name.rsplit('.', 1)[-1]}",
    )


@login_required
@require_GET
def image_thumbnail(request, pk):
    image = get_visible_image(request, pk)
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
