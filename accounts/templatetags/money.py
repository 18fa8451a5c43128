from django import template

from accounts.models import format_usd

register = template.Library()


@register.filter
def usd(micros):
    """Micro-USD → "$0.03882"; None → "unlimited"."""
    return format_usd(micros)


@register.filter
def usd_short(micros):
    """Micro-USD → "$19.96" for balances (cents), keeping "unlimited" for None."""
    if micros is None:
        return "unlimited"
    return f"${micros / 1_000_000:,.2f}"
