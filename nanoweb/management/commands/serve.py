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
        url, banner = self._banner(admin_lines, provider_lines)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"  nanoweb is starting at {url}"))
        for line in banner:
            self.stdout.write(line)
        self.stdout.write("  A process that crashes is restarted; press Ctrl+C to stop them all.\n")
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
        # Once the web process answers, the same sign-in lines again, below its start-up.
        ready = [
            "--ready-url",
            f"http://{self._local_host()}:{settings.PORT}/healthz",
            "--ready-banner",
            "\n".join([f"nanoweb is ready at {url}", *[line.strip() for line in banner]]),
        ]
        args = [*supervise, *ready, "-d", str(settings.BASE_DIR), *processes]
        os.execve(sys.executable, args, env)

    @staticmethod
    def _local_host() -> str:
        return "127.0.0.1" if settings.HOST in ("0.0.0.0", "::", "") else settings.HOST

    def _banner(self, admin_lines, provider_lines) -> tuple[str, list[str]]:
        """Where nanoweb is, and how to sign in as lines (printed now, and again by the
        supervisor once the web process answers)."""
        url = f"http://{settings.HOST}:{settings.PORT}/"
        if settings.HOST in ("0.0.0.0", "::"):
            url = f"http://localhost:{settings.PORT}/ (listening on all interfaces)"
        admin = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        lines = list(admin_lines)
        if admin and not admin_lines:
            lines.append(
                f"  Sign in as {admin.email} with the password set on the first run "
                "(forgotten? `make admin-password`)."
            )
        elif admin:
            lines.append(f"  Sign in at {url} as {admin.email}.")
        lines += [f"  {line}" for line in provider_lines]
        return url, lines
