"""The model catalog and official list prices: the defaults a new instance starts with.

Everything here becomes admin-editable data (ModelSpec, Route, Price rows): the data
migrations seed it, ``configure_providers`` gives the official Google provider a
route per model, and an admin changes any of it in the admin without a release.
Prices are micro-USD per million tokens.

The lineup as of December 2026 (checked against Google's pages; where sources
disagree the figure is a default, see the README's "Models and prices"):

* Nano Banana 2.1 ``gemini-nano-banana-2.1`` (GA 2026-10-06): 14 aspect ratios incl.
  1:4 4:1 1:8 8:1, 1K/2K/4K (512 refused), thinking minimal/medium/high, up to 14
  reference images; $1.50/M input, $7.50/M text and thinking, $30/M image output
  (1120 tokens = $0.0336 per 1K image). Sources: ai.google.dev/gemini-api/docs/models
  (via the LiteLLM day-0 announcement, BerriAI/litellm#44983, and the tanstack/ai
  0.36.0 release notes); 2K/4K token counts are not published: the 3.1 Flash table
  is used as the estimate.
* Nano Banana Pro ``gemini-3-pro-image`` (GA 2026-05-28): 10 ratios, 1K/2K/4K (1120 /
  1120 / 2000 image tokens), 14 references, Search grounding; $2/M in, $12/M text,
  $120/M image. Its preview id was shut down 2026-06-25 (ai.google.dev/gemini-api/
  docs/deprecations).
* Nano Banana 2 ``gemini-3.1-flash-image`` (GA 2026-05-28): deprecated for 2.1; 14
  ratios; 512/1K/2K/4K (747 / 1120 / 1680 / 2520 tokens); $0.50/M in, $3/M text,
  $60/M image. Some sources announce its shutdown for 2026-10-29; Google's
  deprecations page, as read, names none: left blank for admins to set.
* Nano Banana 2 Lite ``gemini-3.1-flash-lite-image``: 14 ratios, 1K only, thinking
  minimal/high, no Search grounding (ai.google.dev/gemini-api/docs/models/
  gemini-3.1-flash-lite-image). Image output as 2.1 ($30/M, $0.0336 per 1K image);
  no input or text rates found: those of Gemini 3.1 Flash-Lite ($0.25/M, $1.50/M)
  are the default.
* Nano Banana ``gemini-2.5-flash-image``: 10 ratios, one size (1290 tokens); since
  2026-09-18 only for Google projects that used it before.
"""

from __future__ import annotations

import datetime as dt

from django.utils.translation import gettext_noop

from generations.models import ALL_ASPECT_RATIOS, ASPECT_RATIOS

# Grounding with Google Search on Gemini 3 models is billed per search query the model
# runs: $14 per 1,000 after a monthly free allowance (ai.google.dev/gemini-api/docs/pricing,
# as summarised by Google's forum and you.com's 2026-09-17 reading of it). The default
# assumes the allowance is used up; an admin within it sets the route's price to 0.
SEARCH_QUERY_MICROS = 14_000

# When the list prices take effect on a new route (before any job: they apply to all).
LIST_PRICES_FROM = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)

GEMINI_PRICES = {
    "gemini-nano-banana-2.1": {
        "input_per_mtok": 1_500_000,
        "text_output_per_mtok": 7_500_000,
        "image_output_per_mtok": 30_000_000,
        "search_query_micros": SEARCH_QUERY_MICROS,
    },
    "gemini-3-pro-image": {
        "input_per_mtok": 2_000_000,
        "text_output_per_mtok": 12_000_000,
        "image_output_per_mtok": 120_000_000,
        "search_query_micros": SEARCH_QUERY_MICROS,
    },
    "gemini-3.1-flash-image": {
        "input_per_mtok": 500_000,
        "text_output_per_mtok": 3_000_000,
        "image_output_per_mtok": 60_000_000,
        "search_query_micros": SEARCH_QUERY_MICROS,
    },
    "gemini-3.1-flash-lite-image": {
        "input_per_mtok": 250_000,
        "text_output_per_mtok": 1_500_000,
        "image_output_per_mtok": 30_000_000,
    },
    "gemini-2.5-flash-image": {
        "input_per_mtok": 300_000,
        "text_output_per_mtok": 2_500_000,
        "image_output_per_mtok": 30_000_000,
    },
}

# Per-image list prices of the queue-style channels, by (provider kind, upstream id), in
# micro-USD by size: a new route through such a provider starts with these (an admin
# edits them as the channels change theirs). Both bill only images that were made.
# fal.ai, from each endpoint's page (fal.ai/models/<endpoint>/llms.txt, read
# 2026-12-01): nano-banana $0.039; nano-banana-pro $0.15, 4K at double; nano-banana-2
# $0.08, 0.5K ×0.75, 2K ×1.5, 4K ×2. google/nano-banana-2.1 is billed by fal per token
# with no token counts in its answer; the figures are fal's own per-image ones for a
# short prompt (fal.ai/learn/tools/nano-banana-api: ~$0.040 at 1K, ~$0.134 at 4K) and
# 2K at Google's 1680 image tokens. Replicate, from replicate.com/google/<model>:
# nano-banana $0.039; nano-banana-pro $0.15 at 1K/2K, $0.30 at 4K. Replicate's
# nano-banana-2 price was not found published per size: its routes start unpriced (and
# so unused) until an admin prices them.
# Stability AI bills credits at $0.01 per successful image (platform.stability.ai/pricing,
# as summarised by developer.puter.com's June 2026 breakdown and aicredits.dev's reading of
# the pricing page): Stable Image Ultra 8, SD 3.5 Large 6.5, SD 3.5 Large Turbo 4, SD 3.5
# Medium 3.5, Stable Image Core 3. Keys are the route's upstream ids (the endpoint for
# ultra and core, the ``model`` field of the sd3 endpoint).
STABILITY_PRICES = {
    "ultra": 80_000,
    "core": 30_000,
    "sd3.5-large": 65_000,
    "sd3.5-large-turbo": 40_000,
    "sd3.5-medium": 35_000,
}
_FAL_NB2 = {"512": 60_000, "1K": 80_000, "2K": 120_000, "4K": 160_000}
_PRO = {"1K": 150_000, "2K": 150_000, "4K": 300_000}
CHANNEL_PRICES: dict[tuple[str, str], dict[str, int]] = {
    ("fal", "fal-ai/nano-banana"): {"default": 39_000},
    ("fal", "fal-ai/nano-banana-pro"): _PRO,
    ("fal", "fal-ai/nano-banana-2"): _FAL_NB2,
    ("fal", "google/nano-banana-2.1"): {"1K": 40_000, "2K": 60_000, "4K": 134_000},
    ("replicate", "google/nano-banana"): {"default": 39_000},
    ("replicate", "google/nano-banana-pro"): _PRO,
    **{
        ("stability", upstream): {"default": micros}
        for upstream, micros in STABILITY_PRICES.items()
    },
}


def channel_price(kind: str, upstream: str) -> dict | None:
    """The Price fields a new route through a queue-style channel starts with, if known."""
    per_image = CHANNEL_PRICES.get((kind, upstream))
    if per_image is None:
        return None
    return {"per_image": dict(per_image), "note": f"{kind} list price per image"}


# Upstream ids Google shut down, and the id that replaced each (DESIGN: the upgrade moves
# routes that name them; the HTTP API keeps accepting them as aliases).
SHUT_DOWN_IDS = {
    "gemini-3-pro-image-preview": ("gemini-3-pro-image", dt.date(2026, 6, 25)),
    "gemini-3.1-flash-image-preview": ("gemini-3.1-flash-image", dt.date(2026, 6, 25)),
}

FLASH_TOKENS = {"1K": 1120, "2K": 1680, "4K": 2520}
# Stability's v2beta generate endpoints (ultra, core, sd3) all take these nine ratios.
STABILITY_RATIOS = ["1:1", "2:3", "3:2", "4:5", "5:4", "9:16", "16:9", "9:21", "21:9"]

MODELS = [
    {
        "slug": "nano-banana-2-1",
        "name": "Nano Banana 2.1",
        "upstream": "gemini-nano-banana-2.1",
        "description": gettext_noop(
            "Gemini Nano Banana 2.1: the current default, sharper text and layouts, "
            "up to 4K and very wide or tall formats."
        ),
        "aspect_ratios": ALL_ASPECT_RATIOS,
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": dict(FLASH_TOKENS),
        "estimate_text_tokens": 1500,
        "thinking_levels": ["minimal", "medium", "high"],
        "grounding": True,
        "status": "ga",
        "sort_order": 5,
    },
    {
        "slug": "nano-banana-pro",
        "name": "Nano Banana Pro",
        "upstream": "gemini-3-pro-image",
        "description": gettext_noop(
            "Gemini 3 Pro Image: best quality and text rendering, up to 4K."
        ),
        "aspect_ratios": ASPECT_RATIOS,
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": {"1K": 1120, "2K": 1120, "4K": 2000},
        "estimate_text_tokens": 2000,
        "grounding": True,
        "status": "ga",
        "aliases": ["gemini-3-pro-image-preview"],
        "sort_order": 20,
    },
    {
        "slug": "nano-banana-2",
        "name": "Nano Banana 2",
        "upstream": "gemini-3.1-flash-image",
        "description": gettext_noop(
            "Gemini 3.1 Flash Image: Pro-level features at Flash speed and price."
        ),
        "aspect_ratios": ALL_ASPECT_RATIOS,
        "sizes": ["512", "1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": {"512": 747, **FLASH_TOKENS},
        "estimate_text_tokens": 1500,
        "thinking_levels": ["minimal", "high"],
        "grounding": True,
        "status": "deprecated",
        "replacement": "nano-banana-2-1",
        "aliases": ["gemini-3.1-flash-image-preview"],
        "sort_order": 30,
    },
    {
        "slug": "nano-banana-2-lite",
        "name": "Nano Banana 2 Lite",
        "upstream": "gemini-3.1-flash-lite-image",
        "description": gettext_noop(
            "Gemini 3.1 Flash Lite Image: the fastest and cheapest, 1K only."
        ),
        "aspect_ratios": ALL_ASPECT_RATIOS,
        "sizes": [],
        "max_reference_images": 14,
        "image_tokens": {"default": 1120},
        "estimate_text_tokens": 600,
        "thinking_levels": ["minimal", "high"],
        "status": "ga",
        "sort_order": 35,
    },
    {
        "slug": "nano-banana",
        "name": "Nano Banana",
        "upstream": "gemini-2.5-flash-image",
        "description": gettext_noop("Gemini 2.5 Flash Image: fast, one size (about 1 megapixel)."),
        "aspect_ratios": ASPECT_RATIOS,
        "sizes": [],
        "max_reference_images": 3,
        "image_tokens": {"default": 1290},
        "estimate_text_tokens": 400,
        "status": "ga",
        "notice": "Google serves it only to projects that used it before September 2026.",
        "replacement": "nano-banana-2-1",
        "sort_order": 40,
    },
    # Stability AI's own models (not Nano Banana): one size per ratio (about 1 MP; Core about
    # 1.5 MP), nine ratios incl. 9:21, image-to-image from one reference where the API takes
    # an image (Ultra, SD 3.5; Core takes none). Priced per image (STABILITY_PRICES); the
    # token estimates are unused for per-image routes.
    {
        "slug": "stable-image-ultra",
        "name": "Stable Image Ultra",
        "upstream": "ultra",
        "description": gettext_noop(
            "Stability AI's best photorealism and typography (about 1 megapixel)."
        ),
        "aspect_ratios": STABILITY_RATIOS,
        "sizes": [],
        "max_reference_images": 1,
        "image_tokens": {"default": 0},
        "estimate_text_tokens": 0,
        "status": "ga",
        "sort_order": 60,
    },
    {
        "slug": "stable-image-core",
        "name": "Stable Image Core",
        "upstream": "core",
        "description": gettext_noop(
            "Stability AI's fast and cheap text-to-image (about 1.5 megapixels)."
        ),
        "aspect_ratios": STABILITY_RATIOS,
        "sizes": [],
        "max_reference_images": 0,
        "image_tokens": {"default": 0},
        "estimate_text_tokens": 0,
        "status": "ga",
        "sort_order": 62,
    },
    {
        "slug": "sd-3-5-large",
        "name": "Stable Diffusion 3.5 Large",
        "upstream": "sd3.5-large",
        "description": gettext_noop(
            "Stability AI's open 8B model, served by Stability (about 1 megapixel)."
        ),
        "aspect_ratios": STABILITY_RATIOS,
        "sizes": [],
        "max_reference_images": 1,
        "image_tokens": {"default": 0},
        "estimate_text_tokens": 0,
        "status": "ga",
        "sort_order": 64,
    },
    {
        "slug": "sandbox",
        "name": "Sandbox",
        "upstream": "gemini-3.1-flash-image",
        "description": gettext_noop(
            "Offline test double: rendered locally, no real model. Priced like "
            "Nano Banana 2 so quotas behave as they will for real."
        ),
        "aspect_ratios": ALL_ASPECT_RATIOS,
        "sizes": ["1K", "2K", "4K"],
        "max_reference_images": 14,
        "image_tokens": dict(FLASH_TOKENS),
        "estimate_text_tokens": 1500,
        "thinking_levels": ["minimal", "high"],  # as its upstream, so both work offline
        "grounding": True,
        "status": "ga",
        "sort_order": 90,
        "is_sandbox": True,
    },
]

DEFAULT_MODEL = "nano-banana-2-1"  # what a new instance offers first


def model_fields(spec: dict, field_names: set[str]) -> dict:
    """The ModelSpec fields of ``spec`` that the (possibly historical) model has."""
    skip = {"slug", "upstream", "replacement"}
    return {k: v for k, v in spec.items() if k not in skip and k in field_names}


def seed_models(model_spec_class) -> None:
    """Create or refresh the catalogue rows. Used by the data migrations, so it takes the
    historical model class and sets only the fields it has; idempotent."""
    names = {f.name for f in model_spec_class._meta.get_fields()}
    for spec in MODELS:
        model_spec_class.objects.update_or_create(
            slug=spec["slug"], defaults=model_fields(spec, names)
        )
    if "replacement" in names:
        for spec in MODELS:
            if spec.get("replacement"):
                model_spec_class.objects.filter(slug=spec["slug"]).update(
                    replacement=model_spec_class.objects.get(slug=spec["replacement"])
                )
