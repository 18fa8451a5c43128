"""Money in templates, by the one rule of ``accounts.models.format_usd``."""

from django import template

from accounts.models import STUDIO, format_left, format_usd

register = template.Library()


@register.filter
def usd(micros):
    """Exact: "$0.038820" — the ledger, billing, the admin."""
    return format_usd(micros)


@register.filter
def usd_studio(micros):
    """What a job costs where people make images: "$0.0388"."""
    return format_usd(micros, STUDIO)


@register.filter
def usd_up_to(micros):
    """An "up to" estimate, rounded up so it never shows less than it can cost: "$0.0389"."""
    return format_usd(micros, STUDIO, rounding="up")


@register.filter
def usd_short(micros):
    """Balances and budgets, in cents, never rounded up: "$19.92"; None → "unlimited"."""
    return format_left(micros)
