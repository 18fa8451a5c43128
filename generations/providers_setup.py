"""Idempotent start-up configuration of upstream providers from the environment.

``GEMINI_API_KEY`` creates (or refreshes) the official Google provider, its key
and routes for the Nano Banana models with default list prices. The sandbox
provider is enabled only while no real key exists (NANOWEB_SANDBOX=auto), or
always (on), or never (off).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction

from generations import pricing
from generations.catalog import GEMINI_PRICES, LIST_PRICES_FROM, MODELS
from generations.crypto import KeyDecryptionError
from generations.models import ModelSpec, Price, Provider, ProviderKey, Route

log = logging.getLogger(__name__)
GOOGLE = "Google Gemini API"
SANDBOX_KEY = "sandbox-key-not-secret"
SANDBOX = "Sandbox (offline)"
ENV_KEY_LABEL = "GEMINI_API_KEY (environment)"


@transaction.atomic
def configure_providers() -> list[str]:
    """Returns lines describing what is configured, for the start-up banner."""
    lines = []
    if settings.GEMINI_API_KEY:
        lines.append(_configure_google(settings.GEMINI_API_KEY))
    real_keys = ProviderKey.objects.filter(
        enabled=True, provider__enabled=True, provider__is_sandbox=False
    ).exists()
    mode = settings.NANOWEB_SANDBOX.lower()
    sandbox_on = mode == "on" or (mode == "auto" and not real_keys)
    lines.append(_configure_sandbox(sandbox_on))
    return lines


def sandbox_wanted() -> bool:
    return Provider.objects.filter(is_sandbox=True, enabled=True).exists()


def _configure_google(api_key: str) -> str:
    provider, _ = Provider.objects.update_or_create(
        name=GOOGLE, defaults={"kind": "gemini", "base_url": settings.GEMINI_BASE_URL}
    )
    key = ProviderKey.objects.filter(provider=provider, label=ENV_KEY_LABEL).first()
    if key is None or _stored_key(key) != api_key.strip():
        key = key or ProviderKey(provider=provider, label=ENV_KEY_LABEL)
        key.set_key(api_key)
        key.enabled, key.exhausted_until, key.disabled_reason = True, None, ""
        key.save()
    for spec in MODELS:
        if spec["upstream"] in GEMINI_PRICES and not spec.get("is_sandbox"):
            _route(spec["slug"], provider, spec["upstream"], priority=10)
    return f"Google Gemini API key …{key.hint or '****'} configured for the Nano Banana models."


def _configure_sandbox(enabled: bool) -> str:
    provider, _ = Provider.objects.update_or_create(
        name=SANDBOX,
        defaults={
            "kind": "gemini",
            "base_url": settings.NANOWEB_SANDBOX_URL,
            "is_sandbox": True,
            "enabled": enabled,
            "read_timeout": 60.0,
        },
    )
    key = provider.keys.filter(label="sandbox").first()
    if key is None or _stored_key(key) != SANDBOX_KEY:
        key = key or ProviderKey(provider=provider, label="sandbox")
        key.set_key(SANDBOX_KEY)
        key.enabled, key.exhausted_until, key.disabled_reason = True, None, ""
        key.save()
    spec = next(s for s in MODELS if s.get("is_sandbox"))
    _route(spec["slug"], provider, spec["upstream"], priority=10)
    ModelSpec.objects.filter(slug=spec["slug"]).update(enabled=enabled)
    if enabled:
        return f"Sandbox (offline) upstream at {settings.NANOWEB_SANDBOX_URL} (no real key set)."
    return "Sandbox (offline) upstream disabled."


def _stored_key(key: ProviderKey) -> str | None:
    """The key as stored, or None when it no longer decrypts (the encryption keys in
    var/ or NANOWEB_ENCRYPTION_KEYS changed): the environment's value replaces it."""
    try:
        return key.get_key()
    except KeyDecryptionError:
        log.warning("The stored key %s no longer decrypts; replacing it from the environment", key)
        return None


def _route(model_slug: str, provider: Provider, upstream: str, *, priority: int) -> Route:
    route, _ = Route.objects.get_or_create(
        model=ModelSpec.objects.get(slug=model_slug),
        provider=provider,
        upstream_model=upstream,
        defaults={"priority": priority},
    )
    if not route.prices.filter(kind=Price.STANDARD).exists():
        Price.objects.create(
            route=route,
            effective_from=LIST_PRICES_FROM,
            note="Official list price",
            **GEMINI_PRICES[upstream],
        )
    pricing.give_batch_price(route)
    return route
