"""Template helpers for live status: the navigation's in-flight counter and card stages."""

from django import template

from generations import live

register = template.Library()


@register.simple_tag(takes_context=True)
def generating_count(context) -> int:
    """Jobs in flight for the signed-in person (one COUNT query per page)."""
    user = context["request"].user
    return live.in_flight_count(user) if user.is_authenticated else 0


@register.filter
def live_signature(job) -> str:
    return live.signature(job)


@register.filter
def ordinal(n) -> str:
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
