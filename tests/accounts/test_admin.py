"""Admins type dollars, move money only through the ledger, and bad input changes nothing."""

import pytest

from accounts import quotas
from accounts.admin import TeamForm, UserChange
from accounts.models import LedgerEntry
from tests.accounts.conftest import charged
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead(db):
    return make_user("lead@example.com", is_staff=True, is_superuser=True)


def change_form_data(form) -> dict:
    """What the browser would post back for an untouched change form."""
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[name] = "on"
        elif value not in (None, False):
            data[name] = [str(v) for v in value] if isinstance(value, list) else str(value)
    return data


def post_user(client, user, **changes):
    data = change_form_data(UserChange(instance=user))
    data.update(changes)
    return client.post(f"/admin/accounts/user/{user.pk}/change/", data)


def test_it_shows_and_takes_budgets_in_dollars(client, lead, alice):
    client.force_login(lead)
    page = client.get(f"/admin/accounts/user/{alice.pk}/change/").content.decode()
    assert "Monthly budget (USD)" in page and 'value="20.00"' in page
    r = post_user(client, alice, monthly_budget_micros="$1,250.50")
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.monthly_budget_micros == 1_250_500_000


def test_an_empty_budget_means_unlimited(client, lead, alice):
    client.force_login(lead)
    post_user(client, alice, monthly_budget_micros="")
    alice.refresh_from_db()
    assert alice.monthly_budget_micros is None


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("-5", "A budget or price cannot be negative."),
        ("twenty", "is not an amount in US dollars"),
        ("0.0000001", "Use at most six decimals"),
        ("NaN", "Enter a finite amount"),
    ],
)
def test_it_refuses_a_bad_budget_with_a_message_and_changes_nothing(
    client, lead, alice, typed, message
):
    client.force_login(lead)
    r = post_user(client, alice, monthly_budget_micros=typed)
    assert r.status_code == 200
    assert message in r.content.decode()
    alice.refresh_from_db()
    assert alice.monthly_budget_micros == 20_000_000


def test_it_refuses_a_negative_daily_limit(client, lead, alice):
    client.force_login(lead)
    r = post_user(client, alice, daily_image_limit="-1")
    assert "greater than or equal to 0" in r.content.decode()
    alice.refresh_from_db()
    assert alice.daily_image_limit == 50


def test_a_team_budget_is_typed_in_dollars_and_refused_when_negative(team):
    form = TeamForm(instance=team, data={"name": "Acme", "shared_monthly_budget_micros": "-1"})
    assert not form.is_valid()
    assert form.errors["shared_monthly_budget_micros"] == ["A budget or price cannot be negative."]
    form = TeamForm(instance=team, data={"name": "Acme", "shared_monthly_budget_micros": "300"})
    assert form.is_valid(), form.errors
    assert form.save().shared_monthly_budget_micros == 300_000_000


def test_the_team_page_lists_its_members(client, lead, team, alice, bob):
    client.force_login(lead)
    page = client.get(f"/admin/accounts/team/{team.pk}/change/").content.decode()
    assert "alice@example.com" in page and "bob@example.com" in page
    assert "Shared team budget (USD)" in page


def test_a_grant_goes_through_the_ledger_with_actor_and_reason(client, lead, alice):
    client.force_login(lead)
    r = client.post(
        f"/admin/accounts/user/{alice.pk}/grant/",
        {"kind": "grant", "amount": "5", "images": "3", "reason": "launch week"},
    )
    assert r.status_code == 302
    entry = LedgerEntry.objects.get(kind="grant")
    assert (entry.user, entry.actor, entry.reason) == (alice, lead, "launch week")
    assert (entry.spent_delta, entry.images_used_delta) == (-5_000_000, -3)
    assert quotas.summary(alice).budget_left == 25_000_000
    assert quotas.ledger_problems() == []


def test_an_adjustment_can_refund(client, lead, alice):
    client.force_login(lead)
    client.post(
        f"/admin/accounts/user/{alice.pk}/grant/",
        {"kind": "adjust", "amount": "-0.123457", "images": "0", "reason": "broken image"},
    )
    entry = LedgerEntry.objects.get(kind="adjust")
    assert entry.spent_delta == -123_457 and entry.actor == lead


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"kind": "grant", "amount": "", "images": "0", "reason": "x"},
            "Enter an amount, a number of images, or both.",
        ),
        ({"kind": "grant", "amount": "-5", "images": "0", "reason": "x"}, "A grant gives room"),
        ({"kind": "grant", "amount": "5", "images": "0", "reason": ""}, "This field is required."),
        (
            {"kind": "adjust", "amount": "five", "images": "0", "reason": "x"},
            "is not an amount in US dollars",
        ),
    ],
)
def test_a_bad_grant_is_refused_and_changes_nothing(client, lead, alice, data, message):
    client.force_login(lead)
    r = client.post(f"/admin/accounts/user/{alice.pk}/grant/", data)
    assert r.status_code == 200
    assert message in r.content.decode()
    assert not LedgerEntry.objects.exists()


def test_only_staff_can_grant(client, alice, bob):
    client.force_login(alice)
    r = client.post(
        f"/admin/accounts/user/{bob.pk}/grant/",
        {"kind": "grant", "amount": "5", "images": "0", "reason": "me"},
    )
    assert r.status_code == 302 and "/admin/login/" in r["Location"]
    assert not LedgerEntry.objects.exists()


def test_the_ledger_can_be_filtered_by_person_and_kind(client, lead, alice, bob):
    quotas.grant(alice, micros=1_000_000, actor=lead, reason="alice's grant")
    quotas.grant(bob, micros=2_000_000, actor=lead, reason="bob's grant")
    client.force_login(lead)
    page = client.get(
        "/admin/accounts/ledgerentry/", {"user__id__exact": alice.pk, "kind__exact": "grant"}
    ).content.decode()
    assert "alice&#x27;s grant" in page and "bob&#x27;s grant" not in page
    assert "Billing report" in page


def test_the_user_list_shows_this_months_spend(client, lead, alice):
    quotas.adjust(alice, micros=1_500_000, actor=lead, reason="manual charge")
    client.force_login(lead)
    page = client.get("/admin/accounts/user/").content.decode()
    assert "$1.50" in page


def user_page(client, lead, person) -> str:
    client.force_login(lead)
    return client.get(f"/admin/accounts/user/{person.pk}/change/").content.decode()


def test_a_members_page_counts_what_the_team_already_spent_of_its_shared_budget(
    client, lead, team, alice, bob, flash
):
    team.shared_monthly_budget_micros, team.monthly_budget_micros = 20_000_000, None
    team.save()
    bob.uses_team_limits = True
    bob.save()
    charged(alice, flash, 18_000_000)
    page = user_page(client, lead, bob)
    assert "Left this month: $2.00 under team Acme&#x27;s shared monthly budget of $20.00" in page
    assert "unlimited left" not in page


def test_a_members_page_names_their_own_budget_when_it_leaves_less(client, lead, team, bob):
    team.shared_monthly_budget_micros = 20_000_000
    team.save()
    bob.monthly_budget_micros = 5_000_000
    bob.save()
    page = user_page(client, lead, bob)
    assert "Left this month: $5.00 under their own monthly budget of $5.00" in page


def test_a_members_page_names_the_teams_member_limits_they_use(client, lead, team, bob):
    team.monthly_budget_micros, team.daily_image_limit = 3_000_000, 7
    team.save()
    bob.uses_team_limits = True
    bob.save()
    page = user_page(client, lead, bob)
    assert "Left this month: $3.00 under team Acme&#x27;s member monthly budget of $3.00" in page
    assert "Left today: 7 images under team Acme&#x27;s member daily image limit of 7" in page


def test_a_page_without_any_limit_says_unlimited(client, lead):
    lead.daily_image_limit = lead.monthly_budget_micros = None
    lead.save()
    page = user_page(client, lead, lead)
    assert "Left this month: unlimited" in page and "Left today: unlimited" in page


def test_the_grant_page_warns_that_a_grant_cannot_lift_the_teams_shared_budget(
    client, lead, team, bob
):
    team.shared_monthly_budget_micros = 1_000_000
    team.save()
    client.force_login(lead)
    page = client.get(f"/admin/accounts/user/{bob.pk}/grant/").content.decode()
    assert (
        "What limits bob@example.com now is team Acme&#x27;s shared monthly budget ($1.00 "
        "left)" in page
    )
    assert "to give more, raise it on" in page


def test_add_team_prefills_every_member_limit_with_the_site_defaults(client, lead, settings):
    client.force_login(lead)
    page = client.get("/admin/accounts/team/add/").content.decode()
    assert 'name="daily_image_limit" value="50"' in page
    assert 'name="max_concurrent_jobs" value="8"' in page
    assert 'name="monthly_budget_micros" value="20.00"' in page
    form = TeamForm(data={"name": "Design", "monthly_budget_micros": "20.00"})
    assert form.is_valid(), form.errors
    assert form.save().monthly_budget_micros == 20_000_000


def test_the_user_list_says_unlimited_in_every_limit_column_and_marks_team_limits(
    client, lead, team, alice, bob
):
    alice.daily_image_limit = alice.monthly_budget_micros = None
    alice.save()
    team.daily_image_limit, team.monthly_budget_micros = 7, 3_000_000
    team.save()
    bob.uses_team_limits, bob.is_team_admin = True, True
    bob.save()
    client.force_login(lead)
    page = client.get("/admin/accounts/user/").content.decode()
    alice_row = page[page.index("alice@example.com") : page.index("bob@example.com")]
    assert alice_row.count(">unlimited<") == 2 and ">-<" not in alice_row
    bob_row = page[page.index("bob@example.com") : page.index("lead@example.com")]
    assert "7 <small>(team)</small>" in bob_row and "$3.00 <small>(team)</small>" in bob_row
    assert "Acme <small>(admin)</small>" in bob_row
    for header in (
        "Person",
        "Team",
        "Images / day",
        "Budget / month",
        "Spent this month",
        "Active",
    ):
        assert f">{header}</a>" in page or f">{header}</span>" in page, header
