"""Backoff bounds, breaker transitions, and the rate limiter on both stores."""

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from generations.failures import ErrorKind
from generations.resilience import backoff, circuit
from generations.resilience.store import DatabaseStore, RedisStore
from generations.resilience.types import (
    BreakerConfig,
    Limits,
    Permit,
    Wait,
    day_bounds,
    window_seconds,
)
from tests.factories import REPO, database_url, make_route

CFG = BreakerConfig(
    consecutive=10, failure_rate=0.5, min_calls=5, window=60, open_seconds=60, probe_lease=30
)


# --- backoff ---------------------------------------------------------------------------


@hypothesis_settings(deadline=None)  # pure arithmetic; a pause of the machine is not a failure
@given(n=st.integers(1, 60), base=st.floats(0.01, 10), cap=st.floats(0.01, 120))
def test_backoff_stays_within_full_jitter_bounds(n, base, cap):
    delay = backoff.backoff_delay(n, base=base, cap=cap)
    assert 0 <= delay <= min(cap, base * 2 ** (n - 1)) + 1e-9


@hypothesis_settings(deadline=None)
@given(
    kind=st.sampled_from(list(backoff.RETRY_BUDGET)),
    n=st.integers(1, 10),
    after=st.one_of(st.none(), st.floats(0, 5000)),
)
def test_retry_delay_honours_the_upstream_and_the_broker_ceiling(kind, n, after):
    delay = backoff.retry_delay(kind, n, after)
    assert 0 <= delay <= backoff.MAX_COUNTDOWN_SECONDS
    if after is not None:
        assert delay >= min(after, backoff.MAX_COUNTDOWN_SECONDS)


def test_the_first_failover_after_an_overload_is_immediate():
    assert backoff.retry_delay(ErrorKind.TRANSIENT, 1, None) == 0
    assert backoff.retry_delay(ErrorKind.KEY_EXHAUSTED, 1, None) == 0


def test_the_longest_countdown_stays_below_the_brokers_visibility_timeout():
    assert (
        settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
        > backoff.MAX_COUNTDOWN_SECONDS
    )


# --- breaker: the pure transitions ------------------------------------------------------


def run(state, outcomes, now=0.0):
    for ok in outcomes:
        state = circuit.record(state, ok, now, CFG)
    return state


def test_ten_consecutive_failures_open_the_breaker():
    s = run(circuit.fresh(), [True] * 20 + [False] * 9)
    assert s["state"] == circuit.CLOSED  # 9 of 29 is neither 10 in a row nor half
    s = run(s, [False])
    assert s["state"] == circuit.OPEN and s["open_until"] == 60


def test_half_of_at_least_five_calls_in_the_window_opens_it():
    assert run(circuit.fresh(), [False, True, False, True])["state"] == circuit.CLOSED  # 4 calls
    assert run(circuit.fresh(), [True, True, True, False, False])["state"] == circuit.CLOSED
    assert run(circuit.fresh(), [True, True, False, True, False, False])["state"] == circuit.OPEN


def test_failures_in_an_old_window_do_not_count():
    s = run(circuit.fresh(), [False, True, False, True], now=0)
    s = run(s, [False, True], now=61)  # a new window: 1 of 2
    assert s["state"] == circuit.CLOSED


def test_open_then_half_open_with_one_probe_then_closed():
    s = run(circuit.fresh(), [False] * 10, now=100)
    s, d = circuit.allow(s, 120, CFG)
    assert (d.allowed, round(d.wait)) == (False, 40)
    s, d = circuit.allow(s, 160, CFG)
    assert d.allowed and d.probe and s["state"] == circuit.HALF_OPEN
    s, other = circuit.allow(s, 161, CFG)
    assert not other.allowed  # one probe at a time
    s = circuit.record(s, True, 162, CFG)
    assert s["state"] == circuit.CLOSED and s["opened_count"] == 1
    assert circuit.allow(s, 163, CFG)[1].allowed


def test_a_failed_probe_opens_it_again_and_a_lost_probe_lets_another_through():
    s = run(circuit.fresh(), [False] * 10, now=0)
    s, d = circuit.allow(s, 60, CFG)
    assert d.probe
    s = circuit.record(s, False, 61, CFG)
    assert s["state"] == circuit.OPEN and s["open_until"] == 121
    s, d = circuit.allow(s, 121, CFG)
    assert d.probe
    s, d = circuit.allow(s, 121 + CFG.probe_lease, CFG)  # the probe's worker vanished
    assert d.allowed and d.probe
    assert "half-open" in circuit.describe(s, 160)


def test_a_job_that_fails_again_and_again_counts_once():
    s = circuit.fresh()
    for _ in range(30):
        s = circuit.record(s, False, 0, CFG, job="poison")
    assert s["state"] == circuit.CLOSED and (s["calls"], s["failures"]) == (1, 1)


def test_different_jobs_failing_with_nobody_served_open_the_route():
    s = circuit.fresh()
    for i in range(CFG.min_calls):
        assert s["state"] == circuit.CLOSED
        s = circuit.record(s, False, i, CFG, job=f"job-{i}")
    assert s["state"] == circuit.OPEN
    assert s["tripped_by"] == [f"job-{i}" for i in range(CFG.min_calls)]


def test_failures_while_other_jobs_succeed_do_not_open_the_route():
    s = circuit.fresh()
    for i in range(20):  # one person's prompts that always fail, a teammate's that work
        if i % 4 == 0:
            s = circuit.record(s, True, i * 0.1, CFG, job=f"teammate-{i}")
        s = circuit.record(s, False, i * 0.1, CFG, job=f"poison-{i}")
    assert s["state"] == circuit.CLOSED
    for i in range(20):  # their retries fail alone: taken back from the route's count
        s = circuit.record(s, False, 30 + i * 0.1, CFG, job=f"poison-{i}")
    # Taken back, but for the four that failed after the teammate's last success.
    assert s["state"] == circuit.CLOSED and s["failures"] == 4


def test_a_job_that_failed_then_succeeded_still_counted_against_the_route():
    s = circuit.record(circuit.fresh(), False, 0, CFG, job="flaky")
    s = circuit.record(s, True, 1, CFG, job="flaky")
    assert (s["calls"], s["failures"]) == (2, 1)


def test_once_the_route_stops_serving_anyone_it_opens_after_the_vouch():
    s = circuit.record(circuit.fresh(), True, 0, CFG, job="last-good")
    for i in range(12):
        s = circuit.record(s, False, 0.5 + i * 0.1, CFG, job=f"down-{i}")
    assert s["state"] == circuit.CLOSED  # vouched for by a success 0.5 s ago
    s = circuit.record(s, False, CFG.vouch + 1, CFG, job="down-late")
    assert s["state"] == circuit.OPEN


def test_the_probe_is_a_job_other_than_those_that_opened_it():
    s = circuit.fresh()
    for i in range(10):
        s = circuit.record(s, False, 0, CFG, job=f"poison-{i}")
    s, d = circuit.allow(s, CFG.open_seconds, CFG, job="poison-3")
    assert not d.allowed and d.wait == CFG.open_seconds
    s, d = circuit.allow(s, CFG.open_seconds, CFG, job="healthy")
    assert d.allowed and d.probe
    s = circuit.record(s, True, CFG.open_seconds + 1, CFG, job="healthy")
    assert s["state"] == circuit.CLOSED


def test_if_no_other_job_comes_those_that_opened_it_probe_one_period_later():
    s = circuit.fresh()
    for i in range(10):
        s = circuit.record(s, False, 0, CFG, job=f"poison-{i}")
    s, d = circuit.allow(s, 2 * CFG.open_seconds, CFG, job="poison-3")
    assert d.allowed and d.probe
    s = circuit.record(s, False, 2 * CFG.open_seconds + 1, CFG, job="poison-3")
    assert s["state"] == circuit.OPEN and "poison-3" in s["tripped_by"]


# --- the stores -------------------------------------------------------------------------


def stores():
    yield pytest.param("database", id="database")
    yield pytest.param(
        "redis",
        id="redis",
        marks=pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set"),
    )


@pytest.fixture(params=list(stores()))
def store(request, db, settings):
    settings.NANOWEB_RESILIENCE_STORE = request.param
    if request.param == "redis":
        yield RedisStore(os.environ["REDIS_URL"], settings.NANOWEB_REDIS_PREFIX)
    else:
        yield DatabaseStore()


def test_the_store_runs_the_breaker(store):
    route = make_route()
    for _ in range(10):
        store.breaker_record(route.pk, False, CFG)
    assert store.breaker_state(route.pk)["state"] == circuit.OPEN
    decision = store.breaker_allow(route.pk, CFG)
    assert not decision.allowed and 59 < decision.wait <= 60


def test_the_limiter_grants_exactly_the_rpm_and_says_when_the_next_frees(store):
    key = make_route().provider.keys.get()
    limits = Limits(rpm=3)
    granted = [store.acquire(key.pk, limits, 30) for _ in range(5)]
    assert [isinstance(g, Permit) for g in granted] == [True] * 3 + [False] * 2
    wait = granted[-1]
    assert wait.reason == "rpm" and 59 < wait.seconds <= window_seconds()
    assert store.key_usage(key.pk) == {"minute": 3, "day": 3, "in_flight": 3}


def test_full_windows_book_slots_in_order_that_keep_every_window_within_the_limit(store):
    key = make_route().provider.keys.get()
    limits = Limits(rpm=2)
    w = window_seconds()
    now_ones = [store.acquire(key.pk, limits, 30, ahead=1000) for _ in range(2)]
    assert [p.delay for p in now_ones] == [0, 0]
    booked = [store.acquire(key.pk, limits, 30, ahead=1000).delay for _ in range(4)]
    expected = [w, w, 2 * w, 2 * w]  # less the moments the calls took (a loaded machine)
    assert all(e - 2 < d <= e for d, e in zip(booked, expected, strict=True)), booked
    late = store.acquire(key.pk, limits, 30, ahead=100)  # the next slot is too far ahead
    assert isinstance(late, Wait) and late.seconds > 3 * w - 1


def test_concurrent_slots_free_up_on_release(store):
    key = make_route().provider.keys.get()
    limits = Limits(concurrency=2)
    a, b = store.acquire(key.pk, limits, 30), store.acquire(key.pk, limits, 30)
    busy = store.acquire(key.pk, limits, 30)
    assert isinstance(busy, Wait) and busy.reason == "concurrency"
    store.release(a)
    assert isinstance(store.acquire(key.pk, limits, 30), Permit)
    assert store.key_usage(key.pk)["in_flight"] == 2
    store.release(b)


def test_an_unreleased_slot_frees_itself_when_its_lease_ends(store):
    key = make_route().provider.keys.get()
    limits = Limits(concurrency=1)
    assert isinstance(store.acquire(key.pk, limits, 2), Permit)
    assert isinstance(store.acquire(key.pk, limits, 2), Wait)
    time.sleep(2.1)
    assert isinstance(store.acquire(key.pk, limits, 2), Permit)


def test_a_renewed_slot_lives_as_long_as_its_call(store):
    key = make_route().provider.keys.get()
    limits = Limits(concurrency=1)
    permit = store.acquire(key.pk, limits, 1)
    for _ in range(3):  # the job's heartbeat, while the call runs past the first lease
        time.sleep(0.5)
        store.renew(permit, 1)
    assert isinstance(store.acquire(key.pk, limits, 1), Wait)
    time.sleep(1.1)  # the worker died: no more renewals
    assert isinstance(store.acquire(key.pk, limits, 1), Permit)


def test_the_store_tells_jobs_apart_in_the_breaker(store):
    route = make_route()
    for _ in range(20):
        store.breaker_record(route.pk, False, CFG, "poison")
    assert store.breaker_state(route.pk)["state"] == circuit.CLOSED


def test_the_daily_limit_waits_until_pacific_midnight(store):
    key = make_route().provider.keys.get()
    limits = Limits(rpd=2)
    store.acquire(key.pk, limits, 30), store.acquire(key.pk, limits, 30)
    wait = store.acquire(key.pk, limits, 30)
    start, end = day_bounds()
    assert wait.reason == "rpd" and 0 < wait.seconds <= (end - start).total_seconds()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", [p.values[0] for p in stores()])
def test_the_limit_is_exact_across_processes(kind):
    if kind == "redis" and not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set")
    key = make_route().provider.keys.get()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "NANOWEB_RESILIENCE_STORE": kind,
        "NANOWEB_REDIS_PREFIX": settings.NANOWEB_REDIS_PREFIX,
    }
    start_at = time.time() + 4  # every process is set up before the shared start
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.generations.permit_race",
                str(key.pk),
                "25",
                "20",
                str(start_at),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    granted = [int(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(granted) == 25, granted  # 80 tries, 4 processes, a limit of 25 per minute


def test_the_reconciler_forgets_permits_no_window_needs(db):
    from datetime import timedelta

    from django.utils import timezone

    from generations.models import KeyPermit

    key = make_route().provider.keys.get()
    store = DatabaseStore()
    for _ in range(3):
        store.acquire(key.pk, Limits(rpm=10), 30)
    KeyPermit.objects.filter(pk__in=KeyPermit.objects.values("pk")[:2]).update(
        granted_at=timezone.now() - timedelta(days=3)
    )
    assert store.prune() == 2
    assert store.key_usage(key.pk)["minute"] == 1
