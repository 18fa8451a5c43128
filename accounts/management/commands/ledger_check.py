from django.core.management.base import BaseCommand, CommandError

from accounts import quotas


class Command(BaseCommand):
    help = "Verify that every quota counter equals the sum of its ledger entries."

    def handle(self, *args, **options):
        problems = quotas.ledger_problems()
        for problem in problems:
            self.stderr.write(problem)
        if problems:
            raise CommandError(f"{len(problems)} counter(s) disagree with the ledger.")
        self.stdout.write(self.style.SUCCESS("Ledger and counters agree."))
