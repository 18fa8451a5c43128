"""Estimate and actual cost: pure functions over price rows and usage.

Rates are integers (micro-USD per million tokens, or micro-USD per image), so a
cost is an exact integer numerator rounded once, on the total, to the nearest
micro-dollar (half up). Worked check on the recorded fixtures: 2.5 Flash Image
= 17 input + 46 text + 1290 image tokens = $0.038820; 3 Pro Image = 14 input +
(163 text + 174 thinking) + 1120 image tokens = $0.138472.

A route has two kinds of price (``Price.kind``): the standard one for interactive calls,
and the Batch price for economy batches sent through the Gemini Batch API, which Google
bills at 50 % of the standard price ("Batch" column of
ai.google.dev/gemini-api/docs/pricing; ai.google.dev/gemini-api/docs/batch-api: "at 50%
of the standard cost"). :func:`batch_price` is the one way to read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from generations.models import Price
from generations.providers.base import Usage

TOKENS_PER_MILLION = 1_000_000
# Worst-case input tokens one reference image can cost (Gemini bills 258-1120 by model).
ESTIMATE_TOKENS_PER_REFERENCE = 1290


class Unpriced(Exception):
    """A route has no price in force and is not marked free: it must not be used."""


@dataclass(frozen=True)
class Rates:
    input_per_mtok: int = 0
    text_output_per_mtok: int = 0
    image_output_per_mtok: int = 0
    per_image: dict | None = None
    search_query_micros: int = 0  # per Google Search query of a grounded answer

    @classmethod
    def of(cls, price) -> Rates:
        return cls(
            price.input_per_mtok,
            price.text_output_per_mtok,
            price.image_output_per_mtok,
            dict(price.per_image or {}),
            price.search_query_micros,
        )


def _round_micros(numerator: int) -> int:
    return (numerator + TOKENS_PER_MILLION // 2) // TOKENS_PER_MILLION


def cost_micros(
    rates: Rates | None,
    usage: Usage,
    *,
    image_size: str | None = None,
    images: int = 1,
    free: bool = False,
) -> int:
    """What one upstream call actually cost, from the usage it reported."""
    if free:
        return 0
    if rates is None:
        raise Unpriced("no price in force")
    searches = usage.search_queries * rates.search_query_micros  # exact, billed per query
    flat = (rates.per_image or {}).get(image_size or "default")
    if flat is not None:
        return int(flat) * images + searches
    numerator = (
        usage.input_tokens * rates.input_per_mtok
        + (usage.output_text_tokens + usage.thinking_tokens) * rates.text_output_per_mtok
        + usage.output_image_tokens * rates.image_output_per_mtok
    )
    return _round_micros(numerator) + searches


def route_cost(route, price, usage: Usage, image_size: str | None) -> int:
    """What one image through ``route`` costs at ``price`` (its price in force, or None
    for a route marked free) for ``usage``: the one way a route's cost is worked out. A
    route with a free tier serves only the images it gives away (routing skips it once
    they are used up), so they cost nothing."""
    rates = Rates.of(price) if price is not None else None
    return cost_micros(rates, usage, image_size=image_size or None, free=route.bills_nothing)


def batch_price(route, at=None) -> Price | None:
    """The Batch price in force on ``route`` at ``at`` (now by default), None when the
    route has none (it cannot serve economy batches)."""
    return route.price_at(at, kind=Price.BATCH)


BATCH_SHARE = (1, 2)  # Google's Batch API: half the standard price
GOOGLE_API_HOST = "generativelanguage.googleapis.com"


def give_batch_price(route) -> None:
    """A Google (or sandbox) route with a standard price and no Batch price gets one at
    Google's Batch share, so economy batches are offered from the start."""
    provider = route.provider
    if provider.kind != "gemini" or not (
        provider.is_sandbox or GOOGLE_API_HOST in provider.base_url
    ):
        return
    standard = route.price_at()
    if standard is not None and batch_price(route) is None:
        Price.objects.create(route=route, **batch_fields(standard))


def batch_fields(standard: Price) -> dict:
    """The fields of a Batch price at Google's share of ``standard`` (rates rounded down,
    so the person never pays more than half; Search queries keep their price)."""
    num, den = BATCH_SHARE
    return {
        "kind": Price.BATCH,
        "effective_from": standard.effective_from,
        "input_per_mtok": standard.input_per_mtok * num // den,
        "text_output_per_mtok": standard.text_output_per_mtok * num // den,
        "image_output_per_mtok": standard.image_output_per_mtok * num // den,
        "search_query_micros": standard.search_query_micros,
        "per_image": {k: int(v) * num // den for k, v in (standard.per_image or {}).items()},
        "note": "Batch API: 50 % of the standard price",
    }


def worst_case_usage(
    *,
    prompt_chars: int,
    references: int,
    image_tokens: int,
    text_tokens: int,
    grounded: bool = False,
) -> Usage:
    """Usage no real call should exceed: every prompt character a token, every
    reference at the dearest image rate, the model's text/thinking allowance, and the
    Google Search queries a grounded answer is allowed for."""
    return Usage(
        input_tokens=prompt_chars + references * ESTIMATE_TOKENS_PER_REFERENCE,
        output_text_tokens=text_tokens,
        output_image_tokens=image_tokens,
        search_queries=settings.NANOWEB_GROUNDING_ESTIMATE_QUERIES if grounded else 0,
    )
