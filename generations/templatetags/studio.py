from django import template

register = template.Library()


@register.filter
def ratio_css(ratio: str) -> str:
    """ "16:9" → "16 / 9", for CSS aspect-ratio."""
    return str(ratio).replace(":", " / ")
