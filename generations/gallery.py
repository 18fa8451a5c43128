"""The gallery's query logic: filters, keyset pagination, soft delete with undo, zips.

Pages are cut on (created, id), newest first, so the database walks one index and
the page costs the same at image 40 and image 40,000. Filters come from the URL and
are validated by :class:`GalleryFilters`; adding one is a form field plus one entry
in ``FILTERS``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from generations.models import Generation, Image, ModelSpec

SCOPES = [("", _("My images")), ("mine", _("I shared")), ("team", _("Team"))]


class BadCursor(ValueError):
    pass


class GalleryFilters(forms.Form):
    q = forms.CharField(required=False, max_length=200, label=_("Search prompts"))
    model = forms.ModelChoiceField(
        queryset=ModelSpec.objects.all(),
        to_field_name="slug",
        required=False,
        empty_label=_("All models"),
        label=_("Model"),
    )
    starred = forms.BooleanField(required=False, label=_("Starred"))
    shared = forms.ChoiceField(choices=SCOPES, required=False, label=_("Show"))
    since = forms.DateField(required=False, label=_("From"))
    until = forms.DateField(required=False, label=_("To"))
    batch = forms.UUIDField(required=False, label=_("Batch"))

    def model_choices(self):
        """The models worth offering: those people can use now, those that made images,
        and the one filtered by (any model is accepted in a link)."""
        made = Generation.objects.filter(model=OuterRef("pk"))
        chosen = Q(slug=self.data.get("model") or "")
        return ModelSpec.objects.filter(
            Q(pk__in=ModelSpec.objects.available().values("pk")) | Exists(made) | chosen
        )

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", _("The end date is before the start date."))
        return data


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


# name → how a non-empty value narrows the queryset
FILTERS: dict[str, Callable[[QuerySet, object], QuerySet]] = {
    "q": lambda qs, v: qs.filter(generation__prompt__icontains=v.strip()),
    "model": lambda qs, v: qs.filter(generation__model=v),
    "starred": lambda qs, v: qs.filter(starred=True),
    "since": lambda qs, v: qs.filter(created__gte=_day_start(v)),
    "until": lambda qs, v: qs.filter(created__lt=_day_start(v + timedelta(days=1))),
    "batch": lambda qs, v: qs.filter(generation__batch_id=v),
}


# What a tile shows: loading only these halves the time spent building the page's objects.
TILE_FIELDS = (
    "id",
    "generation_id",
    "user_id",
    "width",
    "height",
    "starred",
    "shared_with_team",
    "created",
    "deleted_at",
    "generation__prompt",
    "generation__actual_micros",
    "generation__model__name",
    "generation__model__is_sandbox",
    "user__name",
    "user__email",
)


def scoped(user, scope: str = "") -> QuerySet:
    """Whose images: "" my own, "mine" my own that I shared, "team" everything my team shared."""
    if scope == "team":
        if not user.team_id:
            return Image.objects.none()
        base = Image.objects.live().filter(shared_with_team=True, user__team_id=user.team_id)
    elif scope == "mine":
        base = Image.objects.owned_by(user).filter(shared_with_team=True)
    else:
        base = Image.objects.owned_by(user)
    return base.select_related("generation__model", "user").only(*TILE_FIELDS)


def filtered(user, filters: dict) -> QuerySet:
    qs = scoped(user, filters.get("shared") or "")
    for name, narrow in FILTERS.items():
        value = filters.get(name)
        if value not in (None, "", False):
            qs = narrow(qs, value)
    return qs.order_by("-created", "-id")


@dataclass
class Page:
    images: list[Image]
    next_cursor: str | None


def encode_cursor(image: Image) -> str:
    raw = f"{image.created.isoformat()}|{image.pk}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, pk = raw.split("|")
        created = datetime.fromisoformat(stamp)
        if created.tzinfo is None:
            raise ValueError
        return created, int(pk)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor(
            gettext("This page link is damaged; start again from the first page.")
        ) from exc


def page(qs: QuerySet, cursor: str | None = None, size: int | None = None) -> Page:
    """One page after ``cursor`` (exclusive), plus the cursor of the next page if any."""
    size = size or settings.NANOWEB_GALLERY_PAGE_SIZE
    if cursor:
        created, pk = decode_cursor(cursor)
        qs = qs.filter(Q(created__lt=created) | Q(created=created, id__lt=pk))
    images = list(qs[: size + 1])
    more = len(images) > size
    images = images[:size]
    return Page(images, encode_cursor(images[-1]) if more and images else None)


def neighbours(image: Image, user) -> tuple[Image | None, Image | None]:
    """The newer and older image around ``image`` in its owner's gallery (image page arrows)."""
    qs = scoped(user, "" if image.user_id == user.pk else "team").order_by("-created", "-id")
    newer = (
        qs.filter(Q(created__gt=image.created) | Q(created=image.created, id__gt=image.pk))
        .order_by("created", "id")
        .first()
    )
    older = qs.filter(
        Q(created__lt=image.created) | Q(created=image.created, id__lt=image.pk)
    ).first()
    return newer, older


# --- Edit chain ----------------------------------------------------------------------


def ancestors(image: Image, user, limit: int = 12) -> list[Image]:
    """Parents up the edit chain, oldest first, as far as this person may see them."""
    chain, seen = [], {image.pk}
    current = image
    visible = Image.objects.visible_to(user).select_related("generation__model")
    while len(chain) < limit and current.generation.parent_image_id:
        parent = visible.filter(pk=current.generation.parent_image_id).first()
        if parent is None or parent.pk in seen:
            break
        chain.append(parent)
        seen.add(parent.pk)
        current = parent
    return chain[::-1]


def children(image: Image, user) -> list[Image]:
    """Images made by editing or remixing this one, that this person may see."""
    return list(
        Image.objects.visible_to(user)
        .filter(generation__parent_image=image)
        .select_related("generation__model")
        .order_by("created", "id")[:50]
    )


# --- Star, share, delete with undo -----------------------------------------------------


def owned(user, ids: Iterable) -> QuerySet:
    """This person's live images among ``ids`` (generation ids, as in the URLs)."""
    return Image.objects.owned_by(user).filter(generation_id__in=list(ids))


def soft_delete(user, ids: Iterable) -> int:
    return owned(user, ids).update(deleted_at=timezone.now())


def restore(user, ids: Iterable) -> int:
    """Undo a delete still inside the undo window."""
    cutoff = timezone.now() - timedelta(seconds=settings.NANOWEB_UNDO_SECONDS)
    return Image.objects.filter(
        user=user, generation_id__in=list(ids), deleted_at__gte=cutoff
    ).update(deleted_at=None)


def purge_deleted(now: datetime | None = None) -> int:
    """Remove images deleted longer ago than the undo window, files first."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NANOWEB_UNDO_SECONDS)
    purged = 0
    for image in Image.objects.filter(deleted_at__lt=cutoff).iterator():
        image.file.delete(save=False)
        image.thumbnail.delete(save=False)
        # Conditional: an undo that slipped in between keeps its row (if not its file).
        purged += Image.objects.filter(pk=image.pk, deleted_at__lt=cutoff).delete()[0]
    return purged


# --- Zip downloads ----------------------------------------------------------------------


def zip_name(image: Image) -> str:
    ext = image.file.name.rsplit(".", 1)[-1]
    stamp = timezone.localtime(image.created).strftime("%Y%m%d-%H%M%S")
    return f"nanoweb-{stamp}-{image.generation_id.hex[:8]}.{ext}"


def zip_members(images: Iterable[Image]) -> Iterator[tuple[str, object]]:
    """The images' original files under readable names, for :func:`zips.stream`."""
    for image in images:
        yield zip_name(image), image.file


def image_base() -> str:
    """ "/images/" as routed: tiles and cards build their links from it, since reversing
    seven URLs for each of 40 tiles was most of the page's time."""
    zero = uuid.UUID(int=0)
    return reverse("generations:image", args=[zero]).removesuffix(str(zero))


def edit_url(gen: Generation) -> str:
    """The studio, set to edit this image: it is the reference, the settings are its own."""
    query = {"edit": str(gen.pk), **_settings_query(gen, with_prompt=False)}
    return reverse("generations:studio") + "?" + urlencode(query)


def reuse_url(gen: Generation) -> str:
    """The studio with this image's prompt and settings filled in."""
    return reverse("generations:studio") + "?" + urlencode(_settings_query(gen, with_prompt=True))


def _settings_query(gen: Generation, *, with_prompt: bool) -> dict:
    values = {
        "model": gen.model.slug,
        "aspect_ratio": gen.aspect_ratio,
        "image_size": gen.image_size,
        "count": 1,
    }
    if with_prompt:
        values["prompt"] = gen.prompt
    return values
