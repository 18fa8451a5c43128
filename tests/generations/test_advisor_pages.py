"""The cost advisor's pages: the admin's (whole instance) and a team admin's summary."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import path, reverse

import nanoweb.urls
from accounts.periods import quota_day
from generations import admin_advisor  # noqa: F401 - as generations.admin will import it
from generations.views.advisor import team_advice
from tests.factories import make_user, page_text
from tests.generations.advisor_data import generate_month

# Until the lead wires /usage/advice in nanoweb/urls.py: the project's URLs plus it (and
# the admin's URLs read again, so they include the advisor however the tests are ordered).
urlpatterns = [
    path("admin/", admin.site.urls),
    path("usage/advice", team_advice, name="usage-advice"),
    *[p for p in nanoweb.urls.urlpatterns if str(p.pattern) != "admin/"],
]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

OCTOBER = "start=2026-10-01&end=2026-10-31"


@pytest.fixture
def month():
    return generate_month()


@pytest.fixture
def root(month):
    return month.people[0].__class__.objects.get(email="root@example.com")


def test_it_shows_the_admin_what_the_period_cost_and_that_it_adds_up(client, month, root):
    client.force_login(root)
    response = client.get(f"{reverse('admin:generations_advisor')}?{OCTOBER}")
    assert response.status_code == 200
    text = page_text(response.content)
    assert "The net equals the billing report over the same days: $11.807985" in text
    assert "Relay · RelayCo" in text and "Google Batch · Google Gemini API" in text
    assert "met its daily quota before 15:00" in text
    assert "Put it before Google Gemini API" in text


def test_it_refuses_staff_who_may_not_read_the_ledger(client, month):
    staff = make_user("staff@example.com", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse("admin:generations_advisor")).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_ledgerentry"))
    assert client.get(reverse("admin:generations_advisor")).status_code == 200


def test_it_downloads_each_table_as_csv(client, month, root):
    client.force_login(root)
    url = reverse("admin:generations_advisor")
    response = client.get(f"{url}?{OCTOBER}&table=models")
    assert response["Content-Type"].startswith("text/csv")
    assert "nanoweb-advice-models-2026-10-01-2026-10-31.csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {r["label"] for r in rows} == {"Nano Banana Pro", "Nano Banana"}
    for table in ("routes", "channels", "alternatives", "economy", "health", "recommendations"):
        assert client.get(f"{url}?{OCTOBER}&table={table}").status_code == 200
    assert client.get(f"{url}?{OCTOBER}&table=nope").status_code == 404


def test_it_says_why_a_period_is_refused(client, root):
    client.force_login(root)
    response = client.get(f"{reverse('admin:generations_advisor')}?start=2026-10-31&end=2026-10-01")
    assert response.status_code == 400
    assert "The end date is before the start date." in page_text(response.content)


def test_it_shows_a_team_admin_the_teams_advice(client, month):
    client.force_login(month.lead)
    response = client.get(f"{reverse('usage-advice')}?{OCTOBER}")
    assert response.status_code == 200
    text = page_text(response.content)
    assert "Team Acme · cost advice" in text
    assert "were made in batches: as economy batches" in text
    assert "a second" not in text.lower()  # keys are the instance admin's business
    rows = list(
        csv.DictReader(
            io.StringIO(
                client.get(f"{reverse('usage-advice')}?{OCTOBER}&table=models").content.decode(
                    "utf-8-sig"
                )
            )
        )
    )
    assert rows and all(r["label"] for r in rows)
    assert client.get(f"{reverse('usage-advice')}?{OCTOBER}&table=health").status_code == 404


def test_it_defaults_to_last_month(client, month):
    client.force_login(month.lead)
    response = client.get(reverse("usage-advice"))
    assert response.status_code == 200
    today = quota_day()
    assert response.context["advice"].end == today.replace(day=1) - dt.timedelta(days=1)


def test_it_is_only_for_the_teams_admins(client, month, charlie):
    member = month.people[1]
    for person in (member, charlie):
        client.force_login(person)
        assert client.get(reverse("usage-advice")).status_code == 404
    client.logout()
    assert client.get(reverse("usage-advice")).status_code == 302
