"""Generated images: private files, shown to their owner and, once shared, the team."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from generations.models.jobs import Generation


class ImageQuerySet(models.QuerySet):
    def live(self):
        """Not deleted (a deleted image waits out the undo window, then is purged)."""
        return self.filter(deleted_at__isnull=True)

    def owned_by(self, user):
        return self.live().filter(user=user)

    def visible_to(self, user):
        """The person's own images and what their teammates shared with the team."""
        mine = Q(user=user)
        if user.team_id:
            mine |= Q(shared_with_team=True, user__team_id=user.team_id)
        return self.live().filter(mine)


class Image(models.Model):
    """A generated image: the file is private and served only to its owner (and, once
    shared, to the owner's team)."""

    generation = models.OneToOneField(
        Generation, on_delete=models.CASCADE, related_name="image", verbose_name=_("generation")
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="images",
        verbose_name=_("user"),
    )
    file = models.ImageField(
        upload_to="images/%Y/%m/",
        width_field="width",
        height_field="height",
        verbose_name=_("file"),
    )
    thumbnail = models.ImageField(upload_to="thumbs/%Y/%m/", verbose_name=_("thumbnail"))
    width = models.PositiveIntegerField(default=0, verbose_name=_("width"))
    height = models.PositiveIntegerField(default=0, verbose_name=_("height"))
    mime_type = models.CharField(max_length=30, verbose_name=_("MIME type"))
    bytes = models.PositiveIntegerField(default=0, verbose_name=_("bytes"))
    sha256 = models.CharField(max_length=64, db_index=True, verbose_name=_("sha256"))
    starred = models.BooleanField(default=False, verbose_name=_("starred"))
    shared_with_team = models.BooleanField(default=False, verbose_name=_("shared with team"))
    created = models.DateTimeField(default=timezone.now, db_index=True, verbose_name=_("created"))
    deleted_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text=_("Deleted; the file is purged after the undo window."),
        verbose_name=_("deleted at"),
    )

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = _("image")
        verbose_name_plural = _("images")
        indexes = [
            # The gallery's keyset pagination: newest first, ties broken by id.
            models.Index(fields=["user", "-created", "-id"], name="image_gallery_idx"),
            models.Index(fields=["shared_with_team", "-created", "-id"], name="image_shared_idx"),
            # Only deleted rows: the purge task finds them; galleries never scan it.
            models.Index(
                fields=["deleted_at"],
                name="image_deleted_idx",
                condition=Q(deleted_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.width}×{self.height} {self.mime_type}"

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    def can_change(self, user) -> bool:
        """Only the owner stars, shares or deletes; teammates may view and remix."""
        return self.user_id == user.pk
