"""Admission under real concurrency: threads released together by a barrier."""

import threading

import pytest
from django.db import connection

from accounts import quotas
from accounts.models import LedgerEntry
from generations import jobs
from generations.jobs import SubmitError, submit
from generations.models import Generation
from tests.factories import job_request, make_route


@pytest.mark.django_db(transaction=True)
def test_it_admits_exactly_the_quota_when_50_submissions_race(alice, monkeypatch):
    monkeypatch.setattr(jobs, "enqueue", lambda ids: None)  # admission only; no worker here
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
