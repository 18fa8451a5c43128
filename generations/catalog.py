"""The model catalog and official list prices, in one place.

Used by the data migration (seeding ModelSpecs) and by ``configure_providers``
(routes and default prices for the official Google provider and the sandbox).
Prices are the official list prices: micro-USD per million tokens.
"""

from __future__ import annotations

from generations.models import ASPECT_RATIOS

# Official Gemini API list prices (paid tier), micro-USD per million tokens.
GEMINI_PRICES = {
    "gemini-2.5-flash-image": {
        "input_per_mtok": 300_000,
        "text_output_per_mtok": 2_500_000,
        "image_output_per_mtok": 30_000_000,
    },
    "gemini-3-pro-image-preview": {
        "input_per_mtok": 2_000_000,
        "text_output_per_mtok": 12_000_000,
        "image_output_per_mtok": 120_000_000,
    },
    "gemini-3.1-flash-image-preview": {
        "input_per_mtok": 500_000,
        "text_output_per_mtok": 3_000_000,
        "image_output_per_mtok": 60_000_000,
    },
}

MODELS = [
    {
        "slug": "nano-banana",
        "name": "Nano Banana",
        "upstream": "gemini-2.5-flash-image",
        "description": "Gemini 2.5 Flash Image: fast, one size (about 1 megapixel).",
        "sizes": [],
        "max_reference_images": 3,
        "image_tokens": {"default": 1290},
        "estimate_text_tokens": 400,
        "sort_order": 10,
    },
    {
        "slug": "nano-banana-pro",
        "name": "Nano Banana Pro",
        "upstream": "gemini-3-pro-image-preview",
        "description": "Gemini 3 Pro Image: best quality and text rendering, up to 4K.",
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": {"1K": 1120, "2K": 1120, "4K": 2000},
        "estimate_text_tokens": 2000,
        "sort_order": 20,
    },
    {
        "slug": "nano-banana-2",
        "name": "Nano Banana 2",
        "upstream": "gemini-3.1-flash-image-preview",
        "description": "Gemini 3.1 Flash Image: Pro-level features at Flash speed and price.",
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": {"1K": 1120, "2K": 1680, "4K": 2520},
        "estimate_text_tokens": 1500,
        "sort_order": 30,
    },
    {
        "slug": "sandbox",
        "name": "Sandbox",
        "upstream": "gemini-3.1-flash-image-preview",
        "description": "Offline test double: rendered locally, no real model. Priced like "
        "Nano Banana 2 so quotas behave as they will for real.",
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": {"1K": 1120, "2K": 1680, "4K": 2520},
        "estimate_text_tokens": 1500,
        "sort_order": 90,
        "is_sandbox": True,
    },
]


def model_fields(spec: dict) -> dict:
    fields = {k: v for k, v in spec.items() if k not in ("slug", "upstream")}
    fields["aspect_ratios"] = list(ASPECT_RATIOS)
    return fields


def seed_models(model_spec_class) -> None:
    """Create or refresh the catalogue rows (used by the data migration, so it takes the
    historical model class; idempotent)."""
    for spec in MODELS:
        model_spec_class.objects.update_or_create(slug=spec["slug"], defaults=model_fields(spec))
