"""Shared resilience state: the database store (Redis keeps the same in production)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from generations.models.upstreams import ProviderKey, Route


class KeyPermit(models.Model):
    """One call a key was allowed to make: the rate limiter's sliding window,
    its per-day count and, until released or expired, its concurrency slot."""

    key = models.ForeignKey(ProviderKey, on_delete=models.CASCADE, related_name="permits")
    token = models.CharField(max_length=32, unique=True)
    granted_at = models.DateTimeField(db_index=True)
    expires_at = models.DateTimeField(help_text=_("When a slot nobody released frees itself."))
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["key", "granted_at"])]
        verbose_name = _("key permit")
        verbose_name_plural = _("key permits")

    def __str__(self) -> str:
        return f"{self.key_id}@{self.granted_at:%H:%M:%S}"


class RouteCircuit(models.Model):
    """A route's circuit breaker (the database store)."""

    route = models.OneToOneField(Route, on_delete=models.CASCADE, related_name="circuit")
    state = models.JSONField(default=dict)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("route circuit breaker")
        verbose_name_plural = _("route circuit breakers")

    def __str__(self) -> str:
        return f"{self.route_id}: {self.state.get('state', 'closed')}"
