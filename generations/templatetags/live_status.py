"""Template helpers for live status: the navigation's in-flight counter and card stages."""

import re

from django import template
from django.utils.translation import gettext_lazy as _

from generations import live

register = template.Library()

# A job's stage as the workers store it (English, also what the API says) → what a card
# shows; a stage not listed here is shown as the API has it.
STAGES = {
    "queued": _("Queued"),
    "running": _("Running"),
    "generating": _("Generating"),
    "provider resting after errors": _("Provider resting after errors"),
    "waiting for the provider": _("Waiting for the provider"),
    "waiting for rate limit": _("Waiting for rate limit"),
    "waiting for the economy batch": _("Waiting for the economy batch"),
    "waiting at google (economy)": _("Waiting at Google (economy)"),
    "in the provider's queue": _("In the provider's queue"),
    "generating at the provider": _("Generating at the provider"),
}
PROVIDER_QUEUE_PLACE = re.compile(r"in the provider's queue \(#(\d+)\)")

# "2nd in line": one sentence per English ordinal suffix, so each language words its own.
IN_LINE = {
    # Translators: a job's place in the queue, e.g. "1st in line".
    "st": _("%(n)sst in line"),
    # Translators: a job's place in the queue, e.g. "2nd in line".
    "nd": _("%(n)snd in line"),
    # Translators: a job's place in the queue, e.g. "3rd in line".
    "rd": _("%(n)srd in line"),
    # Translators: a job's place in the queue, e.g. "4th in line".
    "th": _("%(n)sth in line"),
}


@register.simple_tag(takes_context=True)
def generating_count(context) -> int:
    """Jobs in flight for the signed-in person (one COUNT query per page)."""
    user = context["request"].user
    return live.in_flight_count(user) if user.is_authenticated else 0


@register.filter
def live_signature(job) -> str:
    return live.signature(job)


def _suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@register.filter
def ordinal(n) -> str:
    n = int(n)
    return f"{n}{_suffix(n)}"


@register.filter
def place_in_line(n) -> str:
    """ "2nd in line", in the page's language."""
    n = int(n)
    return IN_LINE[_suffix(n)] % {"n": n}


@register.filter
def stage_text(job) -> str:
    """The card's stage in the page's language (``stage_label`` stays English for the API)."""
    stage = (job.stage or "").lower()
    if job.status == job.QUEUED and stage in ("", "queued"):
        return str(STAGES["queued"])
    if stage in STAGES:
        return str(STAGES[stage])
    if place := PROVIDER_QUEUE_PLACE.fullmatch(stage):
        return _("In the provider's queue (#%(position)s)") % {"position": place[1]}
    if not stage and job.status in STAGES:
        return str(STAGES[job.status])
    return job.stage_label
