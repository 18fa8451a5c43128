"""Tiny plain helpers to build domain objects in tests (no fixture framework)."""

from __future__ import annotations

import io

from PIL import Image as PILImage

from generations.catalog import GEMINI_PRICES
from generations.images import clean_image
from generations.jobs import JobRequest
from generations.models import ModelSpec, Price, Provider, ProviderKey, Route
from generations.providers_setup import LIST_PRICES_FROM


def make_route(model_slug: str = "nano-banana", *, base_url: str = "http://127.0.0.1:9",
               upstream: str | None = None, priority: int = 10, price: bool = True,
               provider_name: str = "Test upstream", key: str = "test-key-0123456789",
               kind: str = "gemini", prices: dict | None = None) -> Route:
    model = ModelSpec.objects.get(slug=model_slug)
    upstream = upstream or {"nano-banana": "gemini-2.5-flash-image",
                            "nano-banana-pro": "gemini-3-pro-image-preview"}.get(
        model_slug, "gemini-3.1-flash-image-preview")
    provider, _ = Provider.objects.get_or_create(
        name=provider_name, defaults={"kind": kind, "base_url": base_url})
    if not provider.keys.exists():
        k = ProviderKey(provider=provider, label="primary")
        k.set_key(key)
        k.save()
    route = Route.objects.create(model=model, provider=provider, upstream_model=upstream,
                                 priority=priority)
    if price:
        Price.objects.create(route=route, effective_from=LIST_PRICES_FROM,
                             **(prices or GEMINI_PRICES[upstream]))
    return route


def png_bytes(width: int = 64, height: int = 48, color=(200, 80, 40)) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def job_request(model: ModelSpec, **kwargs) -> JobRequest:
    kwargs.setdefault("prompt", "a lighthouse at dusk")
    kwargs.setdefault("aspect_ratio", "1:1")
    kwargs.setdefault("image_size", model.default_size())
    refs = kwargs.pop("reference_bytes", [])
    kwargs.setdefault("references", [clean_image(b) for b in refs])
    return JobRequest(model=model, **kwargs)


def submit_one(model: ModelSpec, user, **kwargs):
    """Admit one job (as the studio would) and return its Generation."""
    from generations.jobs import submit

    return submit(user, job_request(model, **kwargs))[0]
