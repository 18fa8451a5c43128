"""A month of work for the cost advisor, made as the engine makes it: each job admitted
by ``jobs.submit`` (reserve), its upstream calls recorded as Attempt rows, then settled
at the route's real cost for the usage its upstream reported, or released.

No upstream is called: the answers are what Google, a relay and fal report. The
clock is moved with :func:`clock` so every row has the time it would have had.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
from dataclasses import dataclass, field
from unittest import mock
from zoneinfo import ZoneInfo

from django.utils import timezone

from accounts import quotas
from accounts.models import Team, usd_to_micros
from generations import pricing
from generations.catalog import CHANNEL_PRICES
from generations.failures import OK, ErrorKind
from generations.models import Attempt, Batch, Generation, Price, Route
from generations.providers.base import Usage
from tests.factories import make_route, make_user, submit_one

PACIFIC = ZoneInfo("America/Los_Angeles")
GOOGLE_URL = "https://generativelanguage.googleapis.com"
PRO_USAGE = Usage(input_tokens=14, output_text_tokens=163, thinking_tokens=174,
                  output_image_tokens=1120)  # fmt: skip  # $0.138472 at Google's list price
FLASH_USAGE = Usage(input_tokens=17, output_text_tokens=46, output_image_tokens=1290)
RELAY_PRO = {"per_image": {"1K": 50_000, "2K": 50_000, "4K": 90_000}, "note": "relay per call"}


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=PACIFIC)


@contextlib.contextmanager
def clock(now: dt.datetime):
    """Every ``timezone.now()`` answers ``now`` (as the billing tests move time)."""
    with mock.patch.object(timezone, "now", lambda: now):
        yield


@dataclass
class Channels:
    google_pro: Route
    relay_pro: Route
    fal_pro: Route
    google_flash: Route

    @property
    def pro(self):
        return self.google_pro.model

    @property
    def flash(self):
        return self.google_flash.model


def make_channels(*, relay: bool = True, fal: bool = True) -> Channels:
    """Google's own API for Nano Banana Pro and Nano Banana, and for Pro a relay priced
    per call (second) and fal.ai at its list price (third)."""
    google = {"base_url": GOOGLE_URL, "provider_name": "Google Gemini API"}
    google_pro = make_route("nano-banana-pro", priority=10, **google)
    google_flash = make_route("nano-banana", priority=10, **google)
    relay_pro = make_route(
        "nano-banana-pro",
        priority=20,
        provider_name="RelayCo",
        kind="openai_chat",
        base_url="https://relay.example.com/v1",
        prices=RELAY_PRO,
    )
    fal_pro = make_route(
        "nano-banana-pro",
        priority=30,
        provider_name="fal.ai",
        kind="fal",
        base_url="https://queue.fal.run",
        upstream="fal-ai/nano-banana-pro",
        prices={"per_image": CHANNEL_PRICES[("fal", "fal-ai/nano-banana-pro")]},
    )
    for route in google_pro, google_flash:  # Google's Batch API: half the standard price
        Price.objects.create(route=route, **pricing.batch_fields(route.price_at()))
    if not relay:
        Route.objects.filter(pk=relay_pro.pk).update(enabled=False)
    if not fal:
        Route.objects.filter(pk=fal_pro.pk).update(enabled=False)
    return Channels(google_pro, relay_pro, fal_pro, google_flash)


@dataclass
class Call:
    """One upstream call before the one that made the image (or the last, failing)."""

    route: Route
    outcome: str
    http_status: int | None
    latency_ms: int = 400


def make_job(
    person,
    model,
    when: dt.datetime,
    *,
    route: Route | None,
    use: Usage | None = None,
    calls: tuple[Call, ...] = (),
    latency_ms: int = 9_000,
    batch: Batch | None = None,
    prompt: str = "a lighthouse at dusk",
    image_size: str | None = None,
    fail: str = "",
) -> Generation:
    """Admit one job at ``when`` and finish it as the engine would: ``calls`` first,
    then an image from ``route`` with ``use`` (charged at the route's price), or, with
    ``fail`` (an ErrorKind), no image and the reservation released."""
    with clock(when):
        extra = {"image_size": image_size} if image_size else {}
        gen = submit_one(model, person, prompt=prompt, **extra)
    if batch is not None:
        Generation.objects.filter(pk=gen.pk).update(batch=batch)
        gen.batch = batch
    moment = when
    for number, call in enumerate(calls, 1):
        moment += dt.timedelta(milliseconds=call.latency_ms)
        _attempt(gen, number, call.route, moment, call.outcome, call.http_status, call.latency_ms)
    finished = moment + dt.timedelta(milliseconds=latency_ms)
    number = len(calls) + 1
    if fail:
        with clock(finished):
            _attempt(gen, number, route, finished, fail, 200, latency_ms)
            Generation.objects.filter(pk=gen.pk).update(
                status=Generation.FAILED, error_kind=fail, actual_micros=0, refunded=True,
                started=when, finished=finished, attempts=number,
            )  # fmt: skip
            assert quotas.release(gen, reason="blocked by the safety filter")
        return gen
    use = use or (PRO_USAGE if model.slug == "nano-banana-pro" else FLASH_USAGE)
    cost = pricing.route_cost(route, route.price_at(when), use, gen.image_size)
    charged = min(cost, gen.reserved_micros)
    with clock(finished):
        _attempt(gen, number, route, finished, OK, 200, latency_ms)
        Generation.objects.filter(pk=gen.pk).update(
            status=Generation.SUCCEEDED, route=route, actual_micros=charged,
            usage={**use.as_dict(), "upstream_cost_micros": cost},
            started=when, finished=finished, attempts=number,
        )  # fmt: skip
        gen.refresh_from_db()
        assert quotas.settle(gen, charged)
    return gen


def _attempt(gen, number, route, started, outcome, status, latency_ms) -> None:
    Attempt.objects.create(
        generation=gen,
        number=number,
        route=route,
        key_label="primary",
        started=started,
        latency_ms=latency_ms,
        http_status=status,
        outcome=outcome,
    )


def make_batch(person, when: dt.datetime, name: str = "catalogue shots") -> Batch:
    return Batch.objects.create(user=person, name=name, created=when)


def quota_day_jobs(person, channels: Channels, day: dt.date, *, images: int = 4, hour: int = 14):
    """Google's key meets its daily quota at ``hour``: the job then fails over to the
    relay, and the ones after it go straight there (the key rests until midnight)."""
    first = at(day, hour, 5)
    exhausted = Call(channels.google_pro, ErrorKind.KEY_EXHAUSTED, 429)
    make_job(person, channels.pro, first, route=channels.relay_pro, calls=(exhausted,))
    for i in range(1, images):
        make_job(person, channels.pro, first + dt.timedelta(minutes=20 * i),
                 route=channels.relay_pro)  # fmt: skip


@dataclass
class GeneratedMonth:
    start: dt.date
    end: dt.date
    channels: Channels
    team: Team
    lead: object
    people: list = field(default_factory=list)
    quota_days: list[dt.date] = field(default_factory=list)


def generate_month(
    year: int = 2026, month: int = 10, *, seed: int = 20261101, quota_days=(3, 9, 14, 21, 27)
) -> GeneratedMonth:
    """A month of work by three people of team Acme and one without a team: Pro and
    Nano Banana images on Google, batches, Google's key at its daily quota on
    ``quota_days`` (failing over to the relay), 429s, blocked prompts, images made twice,
    a grant and an adjustment. The 1st of the next month must stay out of the period."""
    rng = random.Random(seed)
    channels = make_channels()
    team = Team.objects.create(name="Acme", shared_monthly_budget_micros=usd_to_micros(300))
    roomy = {"monthly_budget_micros": usd_to_micros(200), "daily_image_limit": None}
    lead = make_user("lead@example.com", team=team, is_team_admin=True, name="Lena", **roomy)
    people = [
        lead,
        make_user("alice@example.com", team=team, name="Alice", **roomy),
        make_user("bob@example.com", team=team, name="Bob", **roomy),
        make_user("dave@example.com", name="Dave", **roomy),
    ]
    admin = make_user("root@example.com", is_staff=True, is_superuser=True)
    start = dt.date(year, month, 1)
    following = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    day = start
    while day <= following:
        _one_day(rng, channels, people, day, quota=day.day in quota_days and day < following)
        if day.day == 10 and day < following:
            with clock(at(day, 18)):
                quotas.grant(people[1], micros=2_000_000, actor=admin, reason="launch week")
        if day.day == 20 and day < following:
            with clock(at(day, 18)):
                quotas.adjust(people[2], micros=-123_457, actor=admin, reason="broken image")
        day += dt.timedelta(days=1)
    end = following - dt.timedelta(days=1)
    quota = [dt.date(year, month, d) for d in quota_days]
    return GeneratedMonth(start, end, channels, team, lead, people, quota)


def _one_day(rng, channels: Channels, people, day: dt.date, *, quota: bool) -> None:
    for hour in (9, 11):
        person = rng.choice(people)
        busy = rng.random() < 0.15
        calls = (Call(channels.google_pro, ErrorKind.RATE_LIMITED, 429),) if busy else ()
        use = Usage(
            input_tokens=rng.randint(10, 300),
            output_text_tokens=rng.randint(100, 300),
            thinking_tokens=rng.randint(0, 400),
            output_image_tokens=1120,
        )
        make_job(person, channels.pro, at(day, hour, rng.randint(0, 50)),
                 route=channels.google_pro, use=use, calls=calls,
                 latency_ms=rng.randint(6_000, 25_000), prompt=f"poster {day} {hour}")  # fmt: skip
    make_job(rng.choice(people), channels.flash, at(day, 10), route=channels.google_flash,
             latency_ms=rng.randint(3_000, 9_000), prompt=f"sketch {day}")  # fmt: skip
    if day.weekday() == 1:  # Tuesdays: a batch of catalogue shots
        person = rng.choice(people)
        batch = make_batch(person, at(day, 12))
        for i in range(5):
            make_job(person, channels.pro, at(day, 12, i), route=channels.google_pro,
                     batch=batch, prompt=f"catalogue {day} #{i}")  # fmt: skip
    if day.weekday() == 3:  # Thursdays: one prompt the safety filter blocks
        make_job(rng.choice(people), channels.pro, at(day, 13), route=channels.google_pro,
                 fail=ErrorKind.BLOCKED, prompt="blocked")  # fmt: skip
    if day.day % 7 == 5:  # the same request again two minutes later, paid for again
        person = rng.choice(people)
        for minute in (30, 32):
            make_job(person, channels.flash, at(day, 16, minute), route=channels.google_flash,
                     prompt="the same logo")  # fmt: skip
    if quota:
        quota_day_jobs(rng.choice(people), channels, day)


def bump_priority(route: Route, priority: int) -> None:
    Route.objects.filter(pk=route.pk).update(priority=priority)
