from django import template

from generations import gallery

register = template.Library()


@register.filter
def ratio_css(ratio: str) -> str:
    """ "16:9" → "16 / 9", for CSS aspect-ratio."""
    return str(ratio).replace(":", " / ")


@register.simple_tag
def image_base() -> str:
    return gallery.image_base()


@register.filter
def edit_url(job) -> str:
    return gallery.edit_url(job)


@register.filter
def reuse_url(job) -> str:
    return gallery.reuse_url(job)
