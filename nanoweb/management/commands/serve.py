"""`make run`: migrate, bootstrap, then run web + worker + beat (+ sandbox) from the
Procfile under :mod:`nanoweb.supervise`, which restarts a process that crashes."""

import os
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from generations.providers_setup import configure_providers, sandbox_wanted
from nanoweb.management.commands.bootstrap import ensure_admin


class Command(BaseCommand):
    help = "Prepare the instance and start every process it needs (Procfile, supervised)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--prepare-only",
            action="store_true",
            help="Migrate and bootstrap, then exit without starting processes.",
        )

    def handle(self, *args, prepare_only=False, **options):
        self.stdout.write("Preparing nanoweb…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("createcachetable", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        admin_lines = ensure_admin()
        provider_lines = configure_providers()
        processes = ["web", "worker", "beat"] + (["sandbox"] if sandbox_wanted() else [])
        self._banner(admin_lines, provider_lines)
        if prepare_only:
            return
        env = {
            **os.environ,
            "HOST": settings.HOST,
            "PORT": str(settings.PORT),
            "NANOWEB_SANDBOX_PORT": str(settings.NANOWEB_SANDBOX_PORT),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        procfile = str(Path(settings.BASE_DIR) / "Procfile")
        supervise = [sys.executable, "-m", "nanoweb.supervise", "-f", procfile]
        os.execve(sys.executable, [*supervise, "-d", str(settings.BASE_DIR), *processes], env)

    def _banner(self, admin_lines, provider_lines):
        url = f"http://{settings.HOST}:{settings.PORT}/"
        if settings.HOST in ("0.0.0.0", "::"):
            url = f"http://localhost:{settings.PORT}/ (listening on all interfaces)"
        admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        out = self.stdout
        out.write("")
        out.write(self.style.SUCCESS(f"  nanoweb is starting at {url}"))
        for line in admin_lines:
            out.write(line)
        if admin and not admin_lines:
            out.write(
                f"  Sign in as {admin.email} with the password set on the first run "
                "(forgotten? `make admin-password`)."
            )
        elif admin:
            out.write(f"  Sign in at {url} as {admin.email}.")
        for line in provider_lines:
            out.write(f"  {line}")
        out.write("  A process that crashes is restarted; press Ctrl+C to stop them all.\n")
