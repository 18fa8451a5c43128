"""Idempotent start-up: cache table, first admin account, providers from env."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from generations.providers_setup import configure_providers


class Command(BaseCommand):
    help = "Create the cache table, the first admin account and env-configured providers."

    def handle(self, *args, **options):
        call_command("createcachetable", verbosity=0)
        for line in ensure_admin():
            self.stdout.write(line)
        for line in configure_providers():
            self.stdout.write(f"  {line}")


def ensure_admin() -> list[str]:
    User = get_user_model()
    if User.objects.filter(is_superuser=True).exists():
        return []
    email = settings.NANOWEB_ADMIN_EMAIL
    password = settings.NANOWEB_ADMIN_PASSWORD
    generated = not password
    password = password or secrets.token_urlsafe(12)
    User.objects.create_superuser(
        email=email,
        password=password,
        name="Admin",
        daily_image_limit=None,
        monthly_budget_micros=None,
    )
    lines = [f"  Created the admin account {email}."]
    if generated:
        lines.append(f"  Its password (shown on this first start only): {password}")
    return lines
