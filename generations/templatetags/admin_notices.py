"""What the admin index shows first: notices nobody dismissed yet, and models whose
provider turns them off within 30 days."""

from django import template

from generations.models import ModelSpec, Notice

register = template.Library()

SHUTDOWN_WARNING_DAYS = 30


@register.inclusion_tag("admin/generations/notices.html", takes_context=True)
def admin_notices(context):
    return {
        "notices": list(Notice.objects.active()[:20]),
        "shutting_down": list(
            ModelSpec.objects.shutting_down(SHUTDOWN_WARNING_DAYS).select_related("replacement")
        ),
        "csrf_token": context.get("csrf_token"),
    }
