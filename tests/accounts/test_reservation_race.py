"""Admission under real concurrency: threads and processes released together."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection

from accounts import quotas
from accounts.models import LedgerEntry
from generations import jobs, queue
from generations.jobs import SubmitError, submit
from generations.models import Generation
from tests.factories import REPO, database_url, job_request, make_route, make_user


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_quota_when_50_submissions_race(alice, monkeypatch):
    monkeypatch.setattr(queue, "enqueue", lambda ids: None)  # admission only; no worker here
    model = make_route("nano-banana").model
    alice.daily_image_limit = 10
    alice.save()
    threads, barrier = 50, threading.Barrier(50)
    accepted, refused, errors = [], [], []

    def attempt():
        try:
            barrier.wait()
            accepted.append(submit(alice, job_request(model))[0].pk)
        except SubmitError as exc:
            refused.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - any other error fails the test below
            errors.append(repr(exc))
        finally:
            connection.close()

    pool = [threading.Thread(target=attempt) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()

    assert errors == []
    assert len(accepted) == 10
    assert len(refused) == 40 and all("Daily image limit" in m for m in refused)
    assert Generation.objects.filter(user=alice).count() == 10
    assert LedgerEntry.objects.filter(kind="reserve").count() == 10
    assert quotas.summary(alice).images_today == 10
    assert quotas.ledger_problems() == []


def race(users, model, threads: int) -> tuple[list, list, list]:
    """Submit one image per thread, every thread released by one barrier."""
    barrier = threading.Barrier(threads)
    accepted, refused, errors = [], [], []

    def attempt(user):
        try:
            barrier.wait()
            accepted.append(submit(user, job_request(model))[0].pk)
        except SubmitError as exc:
            refused.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - any other error fails the test
            errors.append(repr(exc))
        finally:
            connection.close()

    pool = [threading.Thread(target=attempt, args=(users[i % len(users)],)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return accepted, refused, errors


@pytest.mark.django_db(transaction=True)
def test_ten_teammates_racing_a_shared_budget_never_overrun_it(team, no_broker):
    model = make_route("nano-banana").model
    people = [make_user(f"p{i}@example.com", team=team) for i in range(10)]
    per_image = jobs.estimate_request(job_request(model))
    team.shared_monthly_budget_micros = 7 * per_image + per_image // 2
    team.save()
    accepted, refused, errors = race(people, model, threads=40)
    assert errors == []
    assert len(accepted) == 7 and len(refused) == 33
    assert all("shared monthly budget" in m for m in refused)
    month = team.quota_counters.get(period="month")
    assert month.micros_reserved + month.micros_spent <= team.shared_monthly_budget_micros
    assert quotas.ledger_problems() == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_200_submissions_from_threads_and_processes_admit_exactly_50(alice):
    model = make_route("nano-banana").model
    alice.daily_image_limit = 50
    alice.save()
    env = {**os.environ, "DATABASE_URL": database_url()}
    start_at = time.time() + 6  # every process is set up before the shared start
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.accounts.submit_race",
                str(alice.pk),
                model.slug,
                "25",
                str(start_at),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    outcomes = [p.communicate(timeout=180)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    accepted, refused, errors = (sum(int(o[i]) for o in outcomes) for i in range(3))
    assert (accepted, refused, errors) == (50, 150, 0)
    assert Generation.objects.filter(user=alice).count() == 50
    assert quotas.summary(alice).images_today == 50
    assert quotas.ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_admissions_and_settlements_racing_for_one_team_never_deadlock(alice, bob, monkeypatch):
    """Workers settle while the web admits, touching the same person's and team's
    counters; on PostgreSQL they must queue for the rows, never deadlock."""
    monkeypatch.setattr(queue, "enqueue", lambda ids: None)
    model = make_route("nano-banana").model
    threads, rounds = 16, 6
    barrier = threading.Barrier(threads)
    errors = []

    def work(i):
        person = alice if i % 2 else bob
        try:
            barrier.wait()
            for n in range(rounds):
                job = submit(person, job_request(model))[0]
                if n % 2:
                    quotas.settle(job, job.reserved_micros // 2)
                else:
                    quotas.release(job, reason="failed before any upstream call")
        except Exception as exc:  # noqa: BLE001 - a deadlock or any other error fails below
            errors.append(repr(exc))
        finally:
            connection.close()

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()

    assert errors == []
    assert LedgerEntry.objects.filter(kind="reserve").count() == threads * rounds
    assert quotas.ledger_problems() == []
