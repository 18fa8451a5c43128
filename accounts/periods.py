"""Quota periods: days end at midnight in NANOWEB_QUOTA_TIMEZONE (Google's
quotas reset at Pacific midnight too); months on the 1st."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def quota_zone() -> ZoneInfo:
    return ZoneInfo(settings.NANOWEB_QUOTA_TIMEZONE)


def quota_day(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(quota_zone()).date()


def month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month_start(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def next_midnight(now: dt.datetime | None = None, zone: ZoneInfo | None = None) -> dt.datetime:
    """The next midnight in ``zone`` (default: the quota zone), as an aware datetime."""
    zone = zone or quota_zone()
    local = (now or timezone.now()).astimezone(zone)
    tomorrow = local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time.min, tzinfo=zone)
