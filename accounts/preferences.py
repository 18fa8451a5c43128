"""A person's language and time zone: chosen once, remembered on their account.

Language: the account's choice; without one, Django's ``LocaleMiddleware`` decides
(the language cookie, then ``Accept-Language``). Time zone: the account's choice; without
one, the browser's (``nanoweb.js`` sends it as the ``nw_tz`` cookie); without that,
``TIME_ZONE``. Every time a person sees is shown in the zone this activates.

The HTTP API answers in English whatever the caller's ``Accept-Language`` or account
says: its messages are read by scripts and SDKs, matched in logs and searched for, and
the OpenAI and Google clients expect English.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from urllib.parse import unquote

from django.conf import settings
from django.utils import timezone, translation

TZ_COOKIE = "nw_tz"
API_PATH = re.compile(r"^/(?:v1(?:beta|alpha)?|api/v1)(?:/|$)")


@functools.cache
def time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_zone(name: str) -> zoneinfo.ZoneInfo | None:
    return zoneinfo.ZoneInfo(name) if name in time_zones() else None


def languages() -> dict[str, str]:
    return dict(settings.LANGUAGES)


def browser_zone(request) -> str:
    name = unquote(request.COOKIES.get(TZ_COOKIE, ""))
    return name if valid_zone(name) else ""


class PreferencesMiddleware:
    """After authentication: a signed-in person's own language and time zone win over
    what the browser asks for."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = request.user
        signed_in = user.is_authenticated
        if API_PATH.match(request.path_info):
            translation.activate("en")
            request.LANGUAGE_CODE = "en"
        elif signed_in and user.language in languages():
            translation.activate(user.language)
            request.LANGUAGE_CODE = translation.get_language()
        zone = valid_zone(user.time_zone if signed_in else "") or valid_zone(browser_zone(request))
        if zone:
            timezone.activate(zone)
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
