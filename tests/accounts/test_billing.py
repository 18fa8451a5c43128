"""The billing report adds up to the ledger, to the micro-dollar, however it is cut."""

import csv
import datetime as dt
import html
import io
import random
import re
from collections import defaultdict
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Sum
from django.utils import timezone

from accounts import billing, quotas
from accounts.forms import BillingForm
from accounts.models import LedgerEntry, Team, csv_text, format_usd
from tests.factories import make_route, make_user, submit_one

pytestmark = pytest.mark.django_db

PACIFIC = ZoneInfo("America/Los_Angeles")
OCTOBER = [dt.date(2026, 10, d) for d in range(1, 32)]


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=PACIFIC)


@pytest.fixture
def october(monkeypatch, alice, bob, charlie, settings):
    """A month of work by four people in two teams (and one without), on two models."""
    admin = make_user("lead@example.com", is_staff=True, is_superuser=True)
    other = Team.objects.create(name="Globex")
    dave = make_user(
        "dave@example.com", team=other, monthly_budget_micros=None, daily_image_limit=None
    )
    flash, pro = make_route("nano-banana").model, make_route("nano-banana-pro").model
    people = [alice, bob, charlie, dave]
    rng = random.Random(20261023)
    for day in OCTOBER + [dt.date(2026, 11, 1)]:  # the 1st of November must stay out
        now = at(day)
        monkeypatch.setattr(timezone, "now", lambda now=now: now)
        for person in rng.sample(people, 2):
            person.refresh_from_db()
            job = submit_one(rng.choice([flash, pro]), person)
            if rng.random() < 0.8:
                assert quotas.settle(job, rng.randint(30_000, job.reserved_micros))
            else:
                assert quotas.release(job, reason="blocked by the safety filter")
        if day.day == 10:
            quotas.grant(alice, micros=5_000_000, images=3, actor=admin, reason="launch week")
        if day.day == 20:
            quotas.adjust(bob, micros=-123_457, actor=admin, reason="refund for a broken image")
    monkeypatch.undo()
    return {"people": people, "admin": admin}


def ledger_spend(**filters) -> int:
    return LedgerEntry.objects.filter(**filters).aggregate(s=Sum("spent_delta"))["s"] or 0


@pytest.mark.parametrize("group", ["user", "team", "model"])
@pytest.mark.parametrize("period", ["month", "day"])
def test_it_adds_up_to_the_ledger_for_every_grouping(october, group, period):
    report = billing.build(OCTOBER[0], OCTOBER[-1], group=group, period=period)
    in_october = {"quota_day__gte": OCTOBER[0], "quota_day__lte": OCTOBER[-1]}
    assert report.total.net == ledger_spend(**in_october) == billing.ledger_net(*OCTOBER[::30])
    assert report.total.charged == ledger_spend(kind="settle", **in_october)
    assert report.total.granted == -5_000_000
    assert report.total.adjusted == -123_457
    assert sum(line.net for line in report.lines) == report.total.net
    assert (
        report.total.images
        == LedgerEntry.objects.filter(kind="settle", **in_october).aggregate(
            n=Sum("images_used_delta")
        )["n"]
    )
    assert quotas.ledger_problems() == []


def test_it_gives_each_person_exactly_their_ledger_spend(october):
    report = billing.build(OCTOBER[0], OCTOBER[-1], group="user", period="month")
    by_person = {line.label: line for line in report.lines}
    for person in october["people"]:
        line = by_person[person.email]
        assert line.period == dt.date(2026, 10, 1)
        assert line.net == ledger_spend(user=person, quota_day__month=10)
        assert line.charged == ledger_spend(user=person, kind="settle", quota_day__month=10)
    assert by_person["alice@example.com"].granted == -5_000_000


def test_it_splits_by_day_and_model(october):
    report = billing.build(OCTOBER[0], OCTOBER[-1], group="model", period="day")
    expected = defaultdict(int)
    for e in LedgerEntry.objects.filter(quota_day__month=10, kind="settle").select_related(
        "generation__model"
    ):
        expected[(e.quota_day, e.generation.model.name)] += e.spent_delta
    got = {
        (line.period, line.label): line.charged
        for line in report.lines
        if line.label != "(grants and adjustments)"
    }
    assert got == dict(expected)


def test_a_one_day_range_holds_only_that_day(october):
    day = OCTOBER[9]
    report = billing.build(day, day, group="user", period="day")
    assert {line.period for line in report.lines} == {day}
    assert report.total.net == ledger_spend(quota_day=day)


def test_the_csv_has_the_same_numbers_as_the_table(october):
    report = billing.build(OCTOBER[0], OCTOBER[-1], group="team", period="month")
    rows = list(csv.DictReader(io.StringIO(billing.to_csv(report).removeprefix("\ufeff"))))
    assert len(rows) == len(report.lines) + 1
    for row, line in zip(rows, [*report.lines, report.total], strict=True):
        assert row["team"] == line.label
        assert int(row["images"]) == line.images
        for column, micros in [
            ("charged_usd", line.charged),
            ("granted_usd", line.granted),
            ("net_usd", line.net),
        ]:
            assert round(float(row[column]) * 1_000_000) == micros
    assert rows[-1]["period"] == "total"
    assert rows[-1]["net_usd"] == f"{report.total.net / 1_000_000:.6f}"


def test_the_admin_page_shows_the_report_and_agrees_with_the_ledger(client, october):
    client.force_login(october["admin"])
    r = client.get(
        "/admin/accounts/ledgerentry/billing/",
        {"start": "2026-10-01", "end": "2026-10-31", "group": "user", "period": "month"},
    )
    assert r.status_code == 200
    page = r.content.decode()
    assert "alice@example.com" in page and "dave@example.com" in page
    assert "equals the ledger" in page
    total = billing.build(OCTOBER[0], OCTOBER[-1]).total
    assert format_usd(total.net) in page and format_usd(total.charged) in page


def test_the_admin_page_exports_csv(client, october):
    client.force_login(october["admin"])
    r = client.get(
        "/admin/accounts/ledgerentry/billing/",
        {
            "start": "2026-10-01",
            "end": "2026-10-31",
            "group": "model",
            "period": "month",
            "format": "csv",
        },
    )
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/csv")
    assert "attachment" in r["Content-Disposition"]
    # The BOM first, so Excel on Chinese Windows reads the file as UTF-8
    assert r.content.decode().splitlines()[0].startswith("\ufeffperiod,model,images,charged_usd")


def test_download_csv_on_first_load_exports_what_the_page_shows(client, october):
    """Before anyone pressed Show, the page shows this month; its CSV link must export
    that report, not answer 400 for the fields the first load did not send."""
    client.force_login(october["admin"])
    page = client.get("/admin/accounts/ledgerentry/billing/")
    assert page.status_code == 200
    link = re.search(r'href="\?([^"]*format=csv)"', page.content.decode()).group(1)
    r = client.get("/admin/accounts/ledgerentry/billing/?" + html.unescape(link))
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    start, end = BillingForm.initial_range()["start"], BillingForm.initial_range()["end"]
    assert f"nanoweb-billing-{start}-{end}-user.csv" in r["Content-Disposition"]
    # A link with only some of the fields takes the rest from the same defaults.
    r = client.get("/admin/accounts/ledgerentry/billing/", {"format": "csv", "group": "model"})
    assert r.status_code == 200 and f"{start}-{end}-model.csv" in r["Content-Disposition"]


def test_a_backwards_range_is_refused_with_a_message(client, october):
    client.force_login(october["admin"])
    r = client.get(
        "/admin/accounts/ledgerentry/billing/",
        {"start": "2026-10-31", "end": "2026-10-01", "group": "user", "period": "day"},
    )
    assert r.status_code == 400
    assert "The end date is before the start date." in r.content.decode()


def test_a_malformed_date_is_refused(client, october):
    client.force_login(october["admin"])
    r = client.get(
        "/admin/accounts/ledgerentry/billing/",
        {"start": "yesterday", "end": "2026-10-01", "group": "user", "period": "day"},
    )
    assert r.status_code == 400
    assert "Enter a valid date." in r.content.decode()


def test_people_who_are_not_staff_cannot_see_it(client, alice):
    client.force_login(alice)
    r = client.get("/admin/accounts/ledgerentry/billing/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_that_starts_like_a_formula_is_kept_as_text(start):
    assert csv_text(f"{start}SUM(A1:A9)") == f"'{start}SUM(A1:A9)"
    assert csv_text("a cat on a mat") == "a cat on a mat"
    assert csv_text(None) == ""
