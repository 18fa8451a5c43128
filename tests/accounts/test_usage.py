"""The usage page: what is left, what was charged each day, where the month is heading."""

import calendar
import datetime as dt
import re

import pytest
from django.utils import timezone, translation

from accounts import quotas
from accounts.models import LedgerEntry
from accounts.periods import month_start, quota_day
from tests.accounts.conftest import charged
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_it_needs_a_sign_in(client):
    r = client.get("/usage")
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]


def test_alice_sees_what_is_left_and_what_she_spent(client, alice, flash):
    charged(alice, flash, 38_820)
    charged(alice, flash, 38_820)
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    assert "Images left today" in page and "48 <small>of 50</small>" in page
    assert "$19.92 <small>of $20.00</small>" in page
    assert "$0.07764" in page  # charged so far


def test_the_chart_has_a_bar_per_day_with_the_days_spend(client, alice, flash):
    charged(alice, flash, 38_820)
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    svg = page[page.index("<svg") : page.index("</svg>")]
    today = quota_day()
    days = (month_start(today).replace(day=28) + dt.timedelta(days=4)).replace(
        day=1
    ) - dt.timedelta(days=1)
    assert svg.count("<rect") == days.day
    assert f"{today:%a %b} {today.day}: $0.038820</title>" in svg
    assert 'role="img"' in svg and "aria-label=" in svg


def test_it_projects_the_month_end(client, alice, flash, monkeypatch):
    today = quota_day()
    charged(alice, flash, 100_000)
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    days_in_month = (
        (today.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    ).day
    expected = round(100_000 * days_in_month / today.day)
    assert f"≈ ${expected / 1_000_000:,.2f}" in page
    assert "within the $20.00 budget" in page


def test_the_ledger_links_to_her_images_and_not_to_others(client, alice, bob, flash):
    mine = charged(alice, flash, 38_820)
    theirs = charged(bob, flash, 38_820)
    from generations.models import Image

    mine.status = "succeeded"
    mine.save(update_fields=["status"])
    Image.objects.create(
        generation=mine,
        user=alice,
        mime_type="image/png",
        bytes=1,
        sha256="0" * 64,
        width=1,
        height=1,
    )
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    assert f"/images/{mine.pk}/file" in page
    assert "Charged" in page and "Held while the image is made" in page
    assert str(theirs.pk) not in page and "bob@example.com" not in page


def test_a_team_member_who_is_not_an_admin_cannot_see_the_team(client, bob):
    client.force_login(bob)
    assert client.get("/usage?view=team").status_code == 404
    assert "?view=team" not in client.get("/usage").content.decode()


def test_a_team_admin_sees_every_member_and_the_team_ledger(client, alice, bob, team, flash):
    team.shared_monthly_budget_micros = 100_000_000
    team.save()
    charged(alice, flash, 38_820)
    charged(bob, flash, 12_000)
    bob.is_team_admin = True
    bob.save()
    client.force_login(bob)
    page = client.get("/usage?view=team").content.decode()
    assert "Team Acme" in page and "alice@example.com" in page
    assert "$0.05082" in page  # 38,820 + 12,000 charged for the team
    assert "$99.94 <small>of $100.00</small>" in page  # left, never rounded up
    rows = re.findall(r"<tr><td>(\w+) <span", page)
    assert rows[:2] == ["Alice", "Bob"]  # biggest spender first


def test_charlie_sees_only_his_own(client, alice, charlie, flash):
    charged(alice, flash, 38_820)
    client.force_login(charlie)
    page = client.get("/usage").content.decode()
    assert "$0.038820" not in page and "Nothing yet this month." in page
    assert client.get("/usage?view=team").status_code == 404


@pytest.mark.parametrize("month", ["nope", "2026-13", "1999-01", "2999-01"])
def test_a_bad_month_is_a_clear_400(client, alice, month):
    client.force_login(alice)
    r = client.get("/usage", {"month": month})
    assert r.status_code == 400
    assert "month" in r.content.decode().lower()


def test_a_past_month_shows_its_total_and_no_projection(client, alice, flash, monkeypatch):
    last_month = month_start(month_start(quota_day()) - dt.timedelta(days=1))
    then = timezone.make_aware(dt.datetime.combine(last_month.replace(day=10), dt.time(12)))
    monkeypatch.setattr(timezone, "now", lambda: then)
    charged(alice, flash, 38_820)
    monkeypatch.undo()
    client.force_login(alice)
    page = client.get("/usage", {"month": f"{last_month:%Y-%m}"}).content.decode()
    assert f"Charged in {last_month:%B}" in page and "$0.038820" in page
    assert "Projection" not in page
    assert "Images left today" not in page
    current = client.get("/usage").content.decode()
    assert "$0.038820" not in current.split("Ledger")[0]


def test_the_ledger_is_paginated(client, alice, flash):
    lead = make_user("lead@example.com", is_staff=True)
    for i in range(60):
        quotas.grant(alice, micros=1, actor=lead, reason=f"grant {i}")
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    assert "Page 1 of 2" in page and "grant 59" in page and "grant 0<" not in page
    assert "grant 0<" in client.get("/usage", {"page": 2}).content.decode()


def test_the_projection_is_the_teams_when_the_shared_budget_binds(client, alice, bob, team, flash):
    """Alice's own budget is $20 but the team's shared $0.50 binds first: the projection
    is the team's pace against $0.50, not hers against $20 (issue 20, defect 2)."""
    team.shared_monthly_budget_micros = 500_000
    team.save()
    charged(alice, flash, 100_000)
    charged(bob, flash, 170_000)
    client.force_login(alice)
    page = client.get("/usage").content.decode()
    assert "team Acme's shared budget" in page  # "Budget left": $0.23 of $0.50
    today = quota_day()
    days = calendar.monthrange(today.year, today.month)[1]
    team_pace = round(270_000 * days / today.day)
    stat = page[page.index("Projection") :]
    stat = stat[: stat.index("</div>")]
    assert "within the $20.00 budget" not in stat
    assert f"≈ ${team_pace / 1_000_000:,.2f}" in stat
    verdict = "more than" if team_pace > 500_000 else "within"
    assert "Team Acme at this pace by" in stat and f"{verdict} its $0.50 shared budget" in stat
    assert f"Your share: ≈ ${round(100_000 * days / today.day) / 1_000_000:,.2f}" in stat


def test_the_ledger_reasons_are_in_the_readers_language(client):
    """Workers write the settlement's reason in English; a Chinese reader sees it in
    Chinese, rebuilt from the entry's own amounts (an admin's words stay as written)."""
    entry = LedgerEntry(
        kind=LedgerEntry.SETTLE,
        reserved_delta=-40_000,
        spent_delta=38_820,
        reason="charged $0.038820 of $0.040000 reserved; $0.001180 returned",
    )
    with translation.override("en"):
        assert entry.plain_reason == entry.reason
    with translation.override("zh-hans"):
        assert entry.plain_reason == "实扣 $0.038820（预留 $0.040000）；退回 $0.001180"
        released = LedgerEntry(
            kind=LedgerEntry.RELEASE, reason="no image (blocked); reservation released"
        )
        assert "blocked" in released.plain_reason and "预留" in released.plain_reason
        typed = LedgerEntry(kind=LedgerEntry.GRANT, reason="for the launch")
        assert typed.plain_reason == "for the launch"
