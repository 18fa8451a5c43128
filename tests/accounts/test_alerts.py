"""Budget alerts fire once at 80 % and once at 100 %, by email and in the studio."""

import pytest
from django.core import mail

from accounts import alerts, quotas
from accounts.models import BudgetAlert, Team
from accounts.tasks import check_budget_alerts
from tests.accounts.conftest import charged
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def charge(user, model, micros):
    charged(user, model, micros)
    return alerts.check(user)


def test_it_alerts_once_at_80_percent_and_once_at_100(alice, flash):
    alice.monthly_budget_micros = 100_000
    alice.save()
    lead = make_user("lead@example.com", is_staff=True)
    assert charge(alice, flash, 39_000) == []
    assert charge(alice, flash, 39_000) == []  # 78 %
    # Admission keeps further jobs out now (a job may cost up to $0.0397), so the rest of
    # the month's charges arrive as adjustments.
    quotas.adjust(alice, micros=3_000, actor=lead, reason="late invoice")
    fired = alerts.check(alice)  # 81 %
    assert [a.threshold for a in fired] == [80]
    assert len(mail.outbox) == 1
    email = mail.outbox[0]
    assert email.to == ["alice@example.com"]
    assert "80 % of your monthly budget" in email.subject
    assert "81 % used: $0.08 of $0.10" in email.body and "/usage" in email.body
    quotas.adjust(alice, micros=1_000, actor=lead, reason="late invoice")
    assert alerts.check(alice) == []  # still 80-something: nothing new
    quotas.adjust(alice, micros=18_000, actor=lead, reason="late invoice")
    fired = alerts.check(alice)  # exactly 100 %
    assert [a.threshold for a in fired] == [100]
    assert "is used up" in mail.outbox[1].body
    assert BudgetAlert.objects.filter(user=alice).count() == 2
    assert BudgetAlert.objects.get(user=alice, threshold=100).emailed_at is not None


def test_checking_again_never_sends_twice(alice, flash):
    alice.monthly_budget_micros = 40_000
    alice.save()
    charge(alice, flash, 39_000)
    assert alerts.check(alice) == [] and alerts.check(alice) == []
    assert len(mail.outbox) == 1


def test_an_unlimited_budget_never_alerts(alice, flash):
    alice.monthly_budget_micros = None
    alice.save()
    charge(alice, flash, 39_000)
    assert not BudgetAlert.objects.exists() and mail.outbox == []


def test_a_shared_team_budget_alerts_the_team_admins(alice, bob, team, flash):
    team.shared_monthly_budget_micros = 200_000
    team.save()
    bob.is_team_admin = True
    bob.save()
    for _ in range(4):
        charge(alice, flash, 39_000)  # 78 % of the team budget
    assert not BudgetAlert.objects.filter(team=team).exists()
    fired = charge(alice, flash, 5_000)
    assert [(a.team, a.threshold) for a in fired] == [(team, 80)]
    team_mail = [m for m in mail.outbox if "team Acme" in m.subject]
    assert [m.to for m in team_mail] == [["bob@example.com"]]
    assert "Team Acme's shared monthly budget is 80 % used" in team_mail[0].body


def test_the_beat_task_catches_an_adjustment(alice, flash):
    lead = make_user("lead@example.com", is_staff=True)
    quotas.adjust(alice, micros=17_000_000, actor=lead, reason="invoice correction")  # 85 %
    assert check_budget_alerts() == 1
    assert BudgetAlert.objects.get(user=alice).threshold == 80
    assert check_budget_alerts() == 0
    assert len(mail.outbox) == 1


def test_the_studio_shows_the_banner_after_crossing_80_percent(client, alice, flash):
    client.force_login(alice)
    assert "monthly budget" not in client.get("/").content.decode()
    alice.monthly_budget_micros = 40_000
    alice.save()
    charge(alice, flash, 36_000)
    page = client.get("/").content.decode()
    assert "Your monthly budget is 90 % used: $0.04 of $0.04." in page
    assert 'href="/usage"' in page


def test_teammates_see_the_team_banner_but_charlie_does_not(
    client, alice, bob, charlie, team, flash
):
    team.shared_monthly_budget_micros = 40_000
    team.save()
    charge(alice, flash, 39_000)
    client.force_login(bob)
    assert "Team Acme&#x27;s shared monthly budget" in client.get("/").content.decode()
    client.force_login(charlie)
    assert "monthly budget is" not in client.get("/").content.decode()


def test_only_a_settlement_that_crosses_a_threshold_asks_for_a_check(alice, bob, flash):
    """Settling is the hot path: the alert check is queued only when there is an alert
    to fire, never for every image. (Each job reserves up to ~$0.04, so admission leaves
    room for the next only below 60 %.)"""
    alice.monthly_budget_micros = 100_000
    alice.save()

    def crosses(user, micros):
        return alerts.crossed(charged(user, flash, micros), micros)

    assert [crosses(alice, m) for m in (30_000, 30_000, 20_000)] == [False, False, True]
    assert crosses(charlie := make_user("c@example.com"), 30_000) is False  # no budget
    assert alerts.crossed(charged(charlie, flash, 0), 0) is False

    bob.team = Team.objects.create(name="Other", shared_monthly_budget_micros=100_000)
    bob.monthly_budget_micros, bob.uses_team_limits = None, False  # only the team's fires
    bob.save()
    assert [crosses(bob, m) for m in (30_000, 30_000, 20_000)] == [False, False, True]
