"""One person, two doors: the studio and the API draw on one quota, even when racing."""

import threading

import pytest
from django.db import connection
from django.test import Client

from accounts import quotas, tokens
from accounts.models import LedgerEntry
from generations.jobs import SubmitError, submit
from generations.models import Generation
from tests.factories import job_request


@pytest.mark.django_db(transaction=True)
def test_studio_and_api_racing_never_overrun_one_quota(alice, sandbox_model, no_broker):
    alice.daily_image_limit = 10
    alice.save()
    raw = tokens.create(alice, "race").secret
    barrier = threading.Barrier(30)
    outcomes, errors = [], []

    def through_studio():
        try:
            barrier.wait()
            submit(alice, job_request(sandbox_model))
            outcomes.append(("studio", "ok"))
        except SubmitError:
            outcomes.append(("studio", "refused"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    def through_api():
        try:
            client = Client()
            barrier.wait()
            r = client.post(
                "/api/v1/generations",
                {"prompt": "a lighthouse at dusk", "model": "sandbox"},
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {raw}",
            )
            outcomes.append(("api", {202: "ok", 429: "refused"}.get(r.status_code, r.content)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=through_studio if i % 2 else through_api) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted({result for _, result in outcomes}) == ["ok", "refused"]
    assert sum(result == "ok" for _, result in outcomes) == 10
    assert Generation.objects.filter(user=alice).count() == 10
    assert LedgerEntry.objects.filter(kind="reserve").count() == 10
    assert quotas.summary(alice).images_today == 10
    assert quotas.ledger_problems() == []
