from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts import quotas
from generations.engine import release_stale_reservations


class Command(BaseCommand):
    help = (
        "Verify that every quota counter equals the sum of its ledger entries and that no "
        "reservation is older than the longest job deadline. --release-stale gives stale "
        "reservations back (the hourly audit does the same)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--release-stale",
            action="store_true",
            help="release reservations older than the longest job deadline",
        )

    def handle(self, *args, **options):
        if options["release_stale"]:
            self.stdout.write(f"Released {release_stale_reservations()} stale reservation(s).")
        problems = quotas.ledger_problems()
        cutoff = timezone.now() - timedelta(seconds=settings.NANOWEB_JOB_DEADLINE_SECONDS)
        stale = quotas.open_reservations(cutoff).count()
        for problem in problems:
            self.stderr.write(problem)
        if stale:
            self.stderr.write(
                f"{stale} reservation(s) are older than the longest job deadline "
                "(run with --release-stale, or wait for the hourly audit)."
            )
        if problems or stale:
            raise CommandError(
                f"{len(problems)} counter(s) disagree with the ledger; "
                f"{stale} stale reservation(s)."
            )
        self.stdout.write(self.style.SUCCESS("Ledger and counters agree; no stale reservations."))
