"""The cost advisor: its figures are the ledger's (and the billing report's), and each
recommendation appears exactly when its data says so."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict

import pytest
from django.db.models import Sum

from accounts import billing, quotas
from accounts.models import LedgerEntry, Team, usd_to_micros
from generations import advisor, pricing
from generations.failures import ErrorKind
from generations.models import Attempt, DuplicateOffer, Generation, Route
from tests.factories import make_route, make_user
from tests.generations.advisor_data import (
    GOOGLE_URL,
    PRO_USAGE,
    Call,
    at,
    clock,
    generate_month,
    make_batch,
    make_channels,
    make_job,
    quota_day_jobs,
)

pytestmark = pytest.mark.django_db

OCTOBER = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))
PRO_GOOGLE = 138_472  # PRO_USAGE at Google's list price


@pytest.fixture
def month():
    return generate_month()


def ledger(**filters) -> int:
    return LedgerEntry.objects.filter(**filters).aggregate(s=Sum("spent_delta"))["s"] or 0


def in_october(**filters) -> dict:
    return {"quota_day__gte": OCTOBER[0], "quota_day__lte": OCTOBER[1], **filters}


# --- the figures add up ----------------------------------------------------------------


def test_it_adds_up_to_the_ledger_and_the_billing_report(month):
    advice = advisor.advise(*OCTOBER)
    report = billing.build(*OCTOBER, group="model", period="month")
    assert advice.net == report.total.net == billing.ledger_net(*OCTOBER) == ledger(**in_october())
    assert (advice.charged, advice.adjusted, advice.granted) == (
        report.total.charged,
        report.total.adjusted,
        report.total.granted,
    )
    assert (advice.adjusted, advice.granted) == (-123_457, -2_000_000)
    assert advice.images == report.total.images
    by_model = {line.label: (line.images, line.charged) for line in report.lines if line.images}
    assert {s.label: (s.images, s.charged) for s in advice.by_model} == by_model
    for table in (advice.by_route, advice.by_channel):
        assert sum(s.charged for s in table) == advice.charged
        assert sum(s.images for s in table) == advice.images
    assert quotas.ledger_problems() == []


def test_it_gives_each_route_and_channel_exactly_its_ledger_charges(month):
    advice = advisor.advise(*OCTOBER)
    expected = defaultdict(lambda: [0, 0])
    for e in LedgerEntry.objects.filter(**in_october(kind="settle")).select_related(
        "generation__route__provider"
    ):
        expected[str(e.generation.route)][0] += e.images_used_delta
        expected[str(e.generation.route)][1] += e.spent_delta
    assert {s.label: [s.images, s.charged] for s in advice.by_route} == dict(expected)
    channels = {s.label: s.charged for s in advice.by_channel}
    relay = ledger(**in_october(kind="settle", generation__route=month.channels.relay_pro))
    assert channels == {"Google (interactive)": advice.charged - relay, "Relay": relay}


def test_it_prices_the_same_images_on_each_channel_from_their_real_usage(month):
    advice = advisor.advise(*OCTOBER)
    ch = month.channels
    pro = Generation.objects.filter(**in_october(model=ch.pro, status="succeeded"))
    rows = {(a.model, a.label): a for a in advice.alternatives}
    relay = rows[("Nano Banana Pro", "Relay · RelayCo")]
    assert relay.images == relay.of_images == pro.count()
    assert relay.cost == 50_000 * pro.count()
    assert relay.actual == ledger(**in_october(kind="settle", generation__model=ch.pro))
    google = rows[("Nano Banana Pro", "Google (interactive) · Google Gemini API")]
    price = ch.google_pro.price_at()
    assert google.cost == sum(
        pricing.route_cost(ch.google_pro, price, advisor.usage_of(g), g.image_size) for g in pro
    )
    batch = rows[("Nano Banana Pro", "Google Batch · Google Gemini API")]
    assert google.cost // 2 <= batch.cost <= google.cost // 2 + pro.count()
    fal = rows[("Nano Banana Pro", "fal.ai · fal.ai")]
    assert fal.cost == 150_000 * pro.count()  # fal's list price at 1K/2K


def test_its_other_figures_are_counted_from_the_attempts_and_batches(month):
    advice = advisor.advise(*OCTOBER)
    ch = month.channels
    batched = Generation.objects.filter(**in_october(batch__isnull=False, status="succeeded"))
    economy = {e.model: e for e in advice.economy}["Nano Banana Pro"]
    assert economy.eligible == batched.count() > 0
    assert economy.actual == ledger(**in_october(kind="settle", generation__in=batched))
    assert economy.saving == economy.actual - economy.economy > 0
    google = next(r for r in advice.routes if r.route == ch.google_pro)
    calls = Attempt.objects.filter(route=ch.google_pro, generation__quota_day__month=10)
    assert google.calls == calls.count()
    assert google.busy == calls.filter(http_status=429).count()
    assert google.quota_days == len(month.quota_days)
    assert google.failures[ErrorKind.BLOCKED] == calls.filter(outcome="blocked").count()
    # The key rests from the call at 14:05 until midnight on each of those days.
    assert google.resting_hours == pytest.approx(len(month.quota_days) * (9 + 55 / 60), abs=0.01)
    assert advice.reuse.paid_again_images == 4  # on the 5th, 12th, 19th and 26th
    assert google.p50_ms <= google.p95_ms


def test_duplicate_offers_taken_and_declined_are_counted_with_what_they_saved(db):
    alice = make_user("alice@example.com", team=Team.objects.create(name="Acme"))
    bob = make_user("bob@example.com")
    zone = dt.timezone(dt.timedelta(hours=-7))  # inside October in the quota zone
    for who, day, saved, declined in [
        (alice, 3, 134_000, False),
        (alice, 9, 67_000, False),
        (alice, 20, 50_000, True),  # "Generate again": not taken, nothing saved
        (bob, 12, 10_000, False),  # not in Acme
        (alice, 31 + 2, 99_000, False),  # November: outside the period
    ]:
        when = dt.datetime(2026, 10, 1, 12, tzinfo=zone) + dt.timedelta(days=day - 1)
        DuplicateOffer.objects.create(
            user=who,
            team=who.team,
            request_id="00000000-0000-0000-0000-000000000001",
            fingerprint="f" * 64,
            saved_micros=saved,
            declined=declined,
            created=when,
        )
    everyone = advisor.advise(*OCTOBER).reuse
    assert (everyone.offers_shown, everyone.offers_taken) == (4, 3)
    assert everyone.offers_saved_micros == 134_000 + 67_000 + 10_000
    acme = advisor.advise(*OCTOBER, team=alice.team).reuse
    assert (acme.offers_shown, acme.offers_taken, acme.offers_saved_micros) == (3, 2, 201_000)
    rows = list(csv.DictReader(io.StringIO(advisor.to_csv(advisor.advise(*OCTOBER), "reuse"))))
    assert rows[0]["offers_taken"] == "3" and rows[0]["offers_saved_usd"] == "0.211000"


def test_a_free_tier_counts_what_its_free_images_would_have_cost(db):
    channels = make_channels(relay=False, fal=False)
    free = make_route(
        "nano-banana-pro", priority=5, base_url=GOOGLE_URL, provider_name="Google free tier"
    )
    Route.objects.filter(pk=free.pk).update(free_daily_images=5)
    free.refresh_from_db()
    alice = make_user("alice@example.com")
    for day in (3, 4):
        make_job(alice, channels.pro, at(dt.date(2026, 10, day)), route=free)
    make_job(alice, channels.pro, at(dt.date(2026, 10, 5)), route=channels.google_pro)
    advice = advisor.advise(*OCTOBER)
    (tier,) = advice.free_tiers
    assert (tier.route, tier.priced_by, tier.images) == (free, channels.google_pro, 2)
    assert tier.saved == 2 * PRO_GOOGLE  # the priced route's price for the same usage
    assert advice.charged == PRO_GOOGLE  # only the image past the allowance was paid
    rows = list(csv.DictReader(io.StringIO(advisor.to_csv(advice, "free_tiers"))))
    assert rows[0]["free_images"] == "2"


def test_no_free_tier_means_no_free_tier_table(db):
    channels = make_channels(relay=False, fal=False)
    make_job(
        make_user("a@example.com"),
        channels.pro,
        at(dt.date(2026, 10, 3)),
        route=channels.google_pro,
    )
    assert advisor.advise(*OCTOBER).free_tiers == []


def test_the_csv_has_the_numbers_of_the_tables(month):
    advice = advisor.advise(*OCTOBER)
    rows = list(csv.DictReader(io.StringIO(advisor.to_csv(advice, "alternatives"))))
    assert len(rows) == len(advice.alternatives)
    for row, alt in zip(rows, advice.alternatives, strict=True):
        assert row["channel"] == alt.label
        assert row["would_cost_usd"] == f"{alt.cost / 1e6:.6f}"
    models = list(csv.DictReader(io.StringIO(advisor.to_csv(advice, "models"))))
    assert sum(int(r["images"]) for r in models) == advice.images
    for table in advisor.TABLES:
        assert advisor.to_csv(advice, table).count("\n") >= 1


def test_the_team_view_holds_only_the_teams_jobs(month):
    advice = advisor.advise(*OCTOBER, team=month.team)
    report = billing.build(*OCTOBER, group="team", period="month")
    line = next(line for line in report.lines if line.label == "Acme")
    assert (advice.net, advice.images) == (line.net, line.images)
    assert advice.charged == ledger(**in_october(kind="settle", team=month.team))


def test_the_default_period_is_last_month():
    assert advisor.last_month(dt.date(2026, 11, 17)) == OCTOBER
    assert advisor.last_month(dt.date(2027, 1, 1)) == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))


# --- each recommendation appears exactly when its data says so -------------------------


@pytest.fixture
def people(db):
    team = Team.objects.create(name="Acme")
    roomy = {"monthly_budget_micros": usd_to_micros(500), "daily_image_limit": None}
    return [make_user(f"p{i}@example.com", team=team, **roomy) for i in range(2)]


def codes(advice) -> list[str]:
    return [r.code for r in advice.recommendations]


def the(advice, code: str) -> advisor.Recommendation:
    (found,) = [r for r in advice.recommendations if r.code == code]
    assert found.based_on
    return found


DAYS = [dt.date(2026, 10, d) for d in range(1, 32)]


def test_it_advises_a_second_key_when_the_key_met_its_quota_on_several_days(people):
    ch = make_channels(fal=False)
    for day in DAYS[2], DAYS[8]:
        quota_day_jobs(people[0], ch, day, images=3)
    r = the(advisor.advise(*OCTOBER), "second_key")
    assert (r.numbers["days"], r.numbers["images"], r.numbers["time"]) == (2, 6, "15:00")
    assert r.numbers["cost_micros"] == 6 * PRO_GOOGLE
    assert r.numbers["charged_micros"] == 6 * 50_000
    assert "On 2 of the 31 days" in r.text and "before 15:00" in r.text


def test_it_does_not_advise_a_second_key_for_one_day_at_the_quota(people):
    ch = make_channels(fal=False)
    quota_day_jobs(people[0], ch, DAYS[2], images=3)
    assert "second_key" not in codes(advisor.advise(*OCTOBER))


def test_it_advises_the_cheaper_route_first_when_it_would_have_saved(people):
    ch = make_channels(fal=False)
    for i in range(15):
        make_job(people[i % 2], ch.pro, at(DAYS[i], 10), route=ch.google_pro)
    r = the(advisor.advise(*OCTOBER), "cheaper_route_first")
    assert r.numbers["saving_micros"] == 15 * (PRO_GOOGLE - 50_000)
    assert r.numbers["route"] == "Relay · RelayCo" and r.numbers["first"] == "Google Gemini API"


def test_it_does_not_advise_a_dearer_route_or_a_disabled_one(people):
    ch = make_channels(relay=False)  # fal ($0.15) is dearer than Google; the relay is off
    for i in range(15):
        make_job(people[i % 2], ch.pro, at(DAYS[i], 10), route=ch.google_pro)
    assert "cheaper_route_first" not in codes(advisor.advise(*OCTOBER))


def test_it_advises_economy_for_batches_that_could_have_waited(people):
    ch = make_channels(relay=False, fal=False)
    batch = make_batch(people[0], at(DAYS[4], 9))
    for i in range(20):
        make_job(people[0], ch.pro, at(DAYS[4], 9, i), route=ch.google_pro, batch=batch)
    for i in range(5):
        make_job(people[1], ch.pro, at(DAYS[5], 9, i), route=ch.google_pro)
    r = the(advisor.advise(*OCTOBER), "economy")
    assert (r.numbers["share"], r.numbers["eligible"], r.numbers["images"]) == (80, 20, 25)
    assert r.numbers["saving_micros"] == 20 * PRO_GOOGLE // 2
    assert r.audience == advisor.TEAM
    assert "80 % of the Nano Banana Pro images" in r.text


def test_it_does_not_advise_economy_without_batches(people):
    ch = make_channels(relay=False, fal=False)
    for i in range(25):
        make_job(people[0], ch.pro, at(DAYS[4], 9, i), route=ch.google_pro)
    advice = advisor.advise(*OCTOBER)
    assert "economy" not in codes(advice)
    assert advice.economy[0].eligible == 0


def test_it_points_at_identical_requests_paid_for_again(people):
    ch = make_channels(relay=False, fal=False)
    for minute in (0, 2):
        make_job(people[0], ch.pro, at(DAYS[3], 10, minute), route=ch.google_pro, prompt="logo")
    r = the(advisor.advise(*OCTOBER), "paid_again")
    assert (r.numbers["images"], r.numbers["cost_micros"]) == (1, PRO_GOOGLE)


def test_it_does_not_count_a_request_repeated_after_the_window_or_by_someone_else(people):
    ch = make_channels(relay=False, fal=False)
    make_job(people[0], ch.pro, at(DAYS[3], 10, 0), route=ch.google_pro, prompt="logo")
    make_job(people[0], ch.pro, at(DAYS[3], 10, 30), route=ch.google_pro, prompt="logo")
    make_job(people[1], ch.pro, at(DAYS[3], 10, 31), route=ch.google_pro, prompt="logo")
    assert "paid_again" not in codes(advisor.advise(*OCTOBER))


def _spend_early_in_november(people, budget_usd: int):
    Team.objects.filter(pk=people[0].team_id).update(
        shared_monthly_budget_micros=usd_to_micros(budget_usd)
    )
    ch = make_channels(relay=False, fal=False)
    for i in range(10):
        make_job(people[0], ch.pro, at(dt.date(2026, 11, 2), 9, i), route=ch.google_pro)
    with clock(at(dt.date(2026, 11, 3), 18)):
        return advisor.advise(*OCTOBER)


def test_it_warns_when_this_months_pace_passes_a_budget(people):
    advice = _spend_early_in_november(people, budget_usd=5)  # $1.38 in 3 days → ≈ $13.85
    r = the(advice, "over_budget")
    assert r.numbers["owner"] == "Team Acme (shared)"
    assert r.numbers["projected_micros"] == round(10 * PRO_GOOGLE * 30 / 3)
    assert "November 30" in r.text


def test_it_does_not_warn_when_the_pace_stays_within_budget(people):
    advice = _spend_early_in_november(people, budget_usd=20)
    assert "over_budget" not in codes(advice)
    team_row = next(p for p in advice.projections if p.owner == "Team Acme (shared)")
    assert team_row.projected == round(10 * PRO_GOOGLE * 30 / 3) and not team_row.over


def _calls(people, busy: int):
    ch = make_channels(relay=False, fal=False)
    for i in range(20):
        calls = (Call(ch.google_pro, ErrorKind.RATE_LIMITED, 429),) if i < busy else ()
        make_job(people[0], ch.pro, at(DAYS[i], 9), route=ch.google_pro, calls=calls)
    return advisor.advise(*OCTOBER)


def test_it_advises_on_a_route_that_is_often_busy(people):
    r = the(_calls(people, busy=8), "busy")  # 8 of 28 calls
    assert (r.numbers["share"], r.numbers["calls"]) == (29, 28)


def test_it_does_not_advise_on_a_route_that_is_rarely_busy(people):
    assert "busy" not in codes(_calls(people, busy=2))


def test_a_quiet_period_has_no_advice(people):
    make_channels()
    advice = advisor.advise(*OCTOBER)
    assert advice.recommendations == [] and advice.net == 0


def test_a_route_added_later_is_priced_at_its_first_price(people):
    ch = make_channels(relay=False, fal=False)
    make_job(people[0], ch.pro, at(DAYS[1], 9), route=ch.google_pro)
    relay = Route.objects.get(pk=ch.relay_pro.pk)
    relay.prices.update(effective_from=at(dt.date(2026, 12, 1)))
    Route.objects.filter(pk=relay.pk).update(enabled=True)
    rows = {a.label: a for a in advisor.advise(*OCTOBER).alternatives}
    assert rows["Relay · RelayCo"].cost == 50_000
    assert PRO_USAGE.output_image_tokens == 1120
