import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction

from accounts import quotas
from accounts.models import LedgerEntry
from accounts.periods import quota_day
from generations.jobs import SubmitError, submit
from tests.factories import job_request, make_route

pytestmark = pytest.mark.django_db


@pytest.fixture
def flash(db):
    return make_route("nano-banana").model


def test_it_reserves_the_worst_case_and_writes_one_ledger_row_per_image(alice, flash):
    jobs = submit(alice, job_request(flash, count=3))
    s = quotas.summary(alice)
    assert s.images_today == 3
    assert s.reserved_month == 3 * jobs[0].reserved_micros > 0
    assert LedgerEntry.objects.filter(kind="reserve", user=alice).count() == 3
    assert quotas.ledger_problems() == []


def test_it_settles_at_the_actual_cost_and_returns_the_rest(alice, flash):
    job = submit(alice, job_request(flash))[0]
    with transaction.atomic():
        assert quotas.settle(job, 38_820)
    s = quotas.summary(alice)
    assert (s.spent_month, s.reserved_month, s.images_today) == (38_820, 0, 1)
    assert "charged $0.03882" in LedgerEntry.objects.get(kind="settle").reason
    assert quotas.ledger_problems() == []


def test_it_never_settles_or_releases_a_job_twice(alice, flash):
    job = submit(alice, job_request(flash))[0]
    assert quotas.settle(job, 38_820)
    assert not quotas.settle(job, 38_820)
    assert not quotas.release(job, reason="late duplicate")
    assert quotas.summary(alice).spent_month == 38_820
    assert quotas.ledger_problems() == []


def test_it_releases_everything_on_a_definitive_failure(alice, flash):
    job = submit(alice, job_request(flash))[0]
    assert quotas.release(job, reason="blocked")
    s = quotas.summary(alice)
    assert (s.spent_month, s.reserved_month, s.images_today) == (0, 0, 0)


def test_it_refuses_past_the_daily_image_limit_and_changes_nothing(alice, flash):
    alice.daily_image_limit = 2
    alice.save()
    submit(alice, job_request(flash, count=2))
    with pytest.raises(SubmitError, match="Daily image limit reached: 2 of 2"):
        submit(alice, job_request(flash))
    assert alice.generations.count() == 2
    assert LedgerEntry.objects.count() == 2


def test_it_refuses_past_the_monthly_budget_with_the_amount_left(alice, flash):
    alice.monthly_budget_micros = 50_000  # $0.05: one Nano Banana image, not two
    alice.save()
    submit(alice, job_request(flash))
    with pytest.raises(SubmitError, match=r"Monthly budget reached.*\$0\.0\d+ of your \$0\.05\b"):
        submit(alice, job_request(flash))
    assert alice.generations.count() == 1


def test_it_treats_empty_limits_as_unlimited(alice, flash):
    alice.daily_image_limit = None
    alice.monthly_budget_micros = None
    alice.save()
    for _ in range(3):
        submit(alice, job_request(flash, count=4))
    assert quotas.summary(alice).images_left is None


def test_it_counts_days_in_the_quota_time_zone(settings):
    settings.NANOWEB_QUOTA_TIMEZONE = "America/Los_Angeles"
    utc_morning = dt.datetime(2026, 3, 10, 6, 30, tzinfo=ZoneInfo("UTC"))
    assert quota_day(utc_morning) == dt.date(2026, 3, 9)  # still the 9th in California


def test_it_keeps_users_counters_apart(alice, bob, flash):
    submit(alice, job_request(flash, count=2))
    assert quotas.summary(bob).images_today == 0


@pytest.mark.parametrize(
    "micros, places, up, text",
    [
        (38_820, 6, False, "$0.038820"),  # the ledger: every place, always six
        (71_700, 6, False, "$0.071700"),
        (1, 6, False, "$0.000001"),
        (1_234_567_890, 6, False, "$1,234.567890"),
        (-138_472, 6, False, "-$0.138472"),
        (0, 6, False, "$0.000000"),
        (38_820, 4, False, "$0.0388"),  # the studio: always four
        (71_700, 4, False, "$0.0717"),
        (38_820, 4, True, "$0.0389"),  # an "up to" never shows less than it can cost
        (38_800, 4, True, "$0.0388"),
        (19_923_000, 2, False, "$19.92"),  # balances: cents
        (20_000_000, 2, False, "$20.00"),
        (-5_000, 2, False, "$0.00"),  # no "-$0.00"
        (None, 6, False, "unlimited"),
    ],
)
def test_money_has_one_rule_of_places(micros, places, up, text):
    """Issue 20, defect 12: amounts came out with 4, 5 or 6 places depending on their
    trailing zeros ($0.0717 beside $0.03882); now each place has a fixed number."""
    from accounts.models import format_usd

    assert format_usd(micros, places, rounding="up" if up else "half") == text


def test_a_grant_gives_room_and_the_ledger_says_who_and_why(alice, charlie, flash):
    alice.daily_image_limit, alice.monthly_budget_micros = 1, 50_000
    alice.save()
    submit(alice, job_request(flash))
    quotas.grant(alice, micros=100_000, images=2, actor=charlie, reason="deadline week")
    submit(alice, job_request(flash, count=2))
    entry = LedgerEntry.objects.get(kind="grant")
    assert (entry.actor, entry.reason, entry.spent_delta) == (charlie, "deadline week", -100_000)
    assert quotas.ledger_problems() == []


def test_an_adjustment_needs_a_reason_and_moves_the_counters(alice, charlie):
    with pytest.raises(ValueError, match="Say why"):
        quotas.adjust(alice, micros=5, actor=charlie, reason=" ")
    with pytest.raises(ValueError):
        quotas.grant(alice, micros=-5, actor=charlie, reason="no")
    quotas.adjust(alice, micros=12_345, actor=charlie, reason="charged by the provider")
    assert quotas.summary(alice).spent_month == 12_345
    assert quotas.ledger_problems() == []


def test_the_audit_releases_reservations_older_than_any_deadline(alice, flash, no_broker):
    from datetime import timedelta

    from django.core.management import CommandError, call_command
    from django.utils import timezone

    from generations import engine
    from generations.models import Generation

    stuck, done, fresh = submit(alice, job_request(flash, count=3))
    long_ago = timezone.now() - timedelta(hours=3)
    LedgerEntry.objects.filter(generation__in=[stuck, done]).update(created=long_ago)
    # …jobs admitted three hours ago, long past their own deadline (an economy row's
    # reservation lives until its own, later, deadline)
    Generation.objects.filter(pk__in=[stuck.pk, done.pk]).update(
        created=long_ago, deadline=long_ago + timedelta(minutes=30)
    )
    Generation.objects.filter(pk=done.pk).update(status="succeeded")  # closed, never settled
    with pytest.raises(CommandError, match="2 stale reservation"):
        call_command("ledger_check")
    assert engine.release_stale_reservations() == 2
    stuck.refresh_from_db()
    assert stuck.status == "failed" and stuck.refunded
    assert LedgerEntry.objects.filter(generation=done, kind="release").exists()
    assert not LedgerEntry.objects.filter(generation=fresh, kind="release").exists()
    call_command("ledger_check")  # clean now
    assert quotas.summary(alice).reserved_month == fresh.reserved_micros


def test_the_summary_says_which_limit_leaves_less_the_persons_or_the_teams(alice, bob, flash):
    team = alice.team
    team.shared_daily_image_limit, team.shared_monthly_budget_micros = 5, 100_000_000
    team.save()
    submit(bob, job_request(flash, count=4))  # the team's images, not alice's
    s = quotas.summary(alice)
    assert s.images_left == 50
    assert s.images_room == quotas.Room(1, 5, "team Acme's shared daily image limit", shared=True)
    assert s.budget_room == quotas.Room(20_000_000, 20_000_000, "their own monthly budget")
