"""What the admins should know that happened without them."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class NoticeQuerySet(models.QuerySet):
    def active(self):
        return self.filter(dismissed_at__isnull=True)


class Notice(models.Model):
    """Something the admins should know that happened without them: routes moved by an
    upgrade, a model the provider shut down. Shown on the admin index until dismissed."""

    created = models.DateTimeField(default=timezone.now, verbose_name=_("created"))
    title = models.CharField(max_length=200, verbose_name=_("title"))
    message = models.TextField(blank=True, verbose_name=_("message"))
    dismissed_at = models.DateTimeField(null=True, blank=True, verbose_name=_("dismissed at"))
    dismissed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("dismissed by"),
    )

    objects = NoticeQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = _("notice")
        verbose_name_plural = _("notices")

    def __str__(self) -> str:
        return self.title
