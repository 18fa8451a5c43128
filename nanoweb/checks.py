"""System checks for settings that only go wrong once there is more than one machine."""

import os

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def token_key_is_shared(app_configs, **kwargs):
    """Off SQLite, web processes may run on several machines: each would generate its
    own var/token_key and refuse the API tokens the others issued."""
    engine = settings.DATABASES["default"]["ENGINE"]
    if engine.endswith("sqlite3") or os.environ.get("NANOWEB_TOKEN_KEY"):
        return []
    return [
        Warning(
            "NANOWEB_TOKEN_KEY is not set, so this machine generated var/token_key itself.",
            hint="Set NANOWEB_TOKEN_KEY to one value on every web machine (README, Secrets "
            "and backups), or API tokens made on one machine fail on the others.",
            id="nanoweb.W001",
        )
    ]
