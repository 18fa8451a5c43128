"""Provider health for admins: why a route or key is resting, and how calls went."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from generations.models import Attempt, ProviderKey, Route
from generations.resilience import circuit
from generations.resilience.store import get_store
from generations.resilience.types import MINUTE, Limits, day_bounds


@dataclass
class CallMix:
    calls: int = 0
    ok: int = 0
    errors: Counter = field(default_factory=Counter)

    @property
    def success_rate(self) -> float | None:
        return self.ok / self.calls if self.calls else None

    @property
    def error_mix(self) -> list[tuple[str, int]]:
        return self.errors.most_common()

    def add(self, outcome: str, n: int) -> None:
        self.calls += n
        if outcome == "ok":
            self.ok += n
        else:
            self.errors[outcome] += n


@dataclass
class RouteHealth:
    route: Route
    breaker: str  # circuit.phase's name: closed, open, half-open, half-open (probing)
    breaker_text: str  # the same in the reader's language, with the seconds left
    times_opened: int
    hour: CallMix


@dataclass
class KeyHealth:
    key: ProviderKey
    status: str  # key_status: in the reader's language
    usage: dict  # minute, day, in_flight (None: not tracked)
    limits: Limits
    hour: CallMix
    ready: bool = True  # neither disabled nor resting


def report(now=None) -> tuple[list[RouteHealth], list[KeyHealth]]:
    now = now or timezone.now()
    since = now - timedelta(hours=1)
    store = get_store()
    recent = Attempt.objects.filter(started__gte=since)
    by_route: dict[int, CallMix] = {}
    for row in recent.values("route_id", "outcome").annotate(n=Count("id")):
        by_route.setdefault(row["route_id"], CallMix()).add(row["outcome"], row["n"])
    by_key: dict[tuple[int, str], CallMix] = {}
    for row in recent.values("route__provider_id", "key_label", "outcome").annotate(n=Count("id")):
        by_key.setdefault((row["route__provider_id"], row["key_label"]), CallMix()).add(
            row["outcome"], row["n"]
        )

    wall = time.time()
    routes = []
    for route in Route.objects.select_related("model", "provider").order_by(
        "model__sort_order", "priority", "id"
    ):
        state = store.breaker_state(route.pk)
        name, seconds = circuit.phase(state, wall)
        routes.append(
            RouteHealth(
                route,
                name,
                breaker_text(name, seconds),
                state.get("opened_count", 0),
                by_route.get(route.pk, CallMix()),
            )
        )
    recorded = _calls_recorded(now)
    keys = []
    for key in ProviderKey.objects.select_related("provider").order_by("provider__name", "label"):
        limits = Limits.of(key.provider)
        # The limiter keeps permits only for keys it limits; others count recorded calls.
        usage = (
            recorded.get((key.provider_id, key.label), _NO_CALLS)
            if limits.unlimited
            else store.key_usage(key.pk)
        )
        keys.append(
            KeyHealth(
                key,
                key_status(key, now),
                usage,
                limits,
                by_key.get((key.provider_id, key.label), CallMix()),
                ready=key.enabled and not (key.exhausted_until and key.exhausted_until > now),
            )
        )
    return routes, keys


_NO_CALLS = {"minute": 0, "day": 0, "in_flight": None}


def _calls_recorded(now) -> dict[tuple[int, str], dict]:
    """Calls made in the last minute and today (Pacific) per (provider, key label), from
    the attempts log; calls in flight are not logged until they end."""
    minute_ago = now - timedelta(seconds=MINUTE)
    rows = (
        Attempt.objects.filter(started__gte=day_bounds(now)[0])
        .values("route__provider_id", "key_label")
        .annotate(day=Count("id"), minute=Count("id", filter=Q(started__gt=minute_ago)))
    )
    return {
        (r["route__provider_id"], r["key_label"]): {
            **_NO_CALLS,
            "minute": r["minute"],
            "day": r["day"],
        }
        for r in rows
    }


def breaker_text(name: str, seconds: int) -> str:
    if name == "open":
        return pgettext("breaker", "open for %(seconds)s s more") % {"seconds": seconds}
    return {
        "half-open": pgettext("breaker", "half-open"),
        "half-open (probing)": pgettext("breaker", "half-open (probing)"),
    }.get(name, pgettext("breaker", "closed"))


def key_status(key: ProviderKey, now=None) -> str:
    """For the health page, in the reader's language ("ready" when nothing holds it)."""
    now = now or timezone.now()
    if not key.enabled:
        if key.disabled_reason:
            return _("disabled: %(reason)s") % {"reason": key.disabled_reason}
        return _("disabled")
    if key.exhausted_until and key.exhausted_until > now:
        local = timezone.localtime(key.exhausted_until)
        return _("daily quota used up; resting until %(when)s") % {
            "when": f"{local:%Y-%m-%d %H:%M %Z}"
        }
    return _("ready")
