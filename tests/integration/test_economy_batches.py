"""Economy batches with real Celery workers: a worker killed while Google (the sandbox)
works on the batch; the next worker resumes polling and nothing is submitted twice."""

import os
import signal
import time

import httpx
import pytest

from accounts import quotas
from accounts.models import LedgerEntry
from generations import batches, economy, engine, pricing
from generations.models import Generation, Image, Route
from generations.models.jobs import UpstreamBatch
from generations.sandbox.server import running_sandbox
from tests.factories import make_user, route_sandbox, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

FAST = {"NANOWEB_ECONOMY_POLL_MIN_SECONDS": "0.3", "NANOWEB_ECONOMY_POLL_MAX_SECONDS": "1"}


def test_a_worker_killed_while_the_batch_runs_upstream_resumes_polling_and_submits_once(
    settings, start_worker
):
    settings.NANOWEB_REQUEUE_AFTER_SECONDS = 2  # what the test's reconcile calls use
    with running_sandbox() as url:
        model = route_sandbox(url, settings)
        route = Route.objects.get(model=model)
        assert pricing.batch_price(route) is not None  # start-up gives it one
        user = make_user("night@example.com", daily_image_limit=None, monthly_budget_micros=None)
        doomed = start_worker(2, NANOWEB_JOB_LEASE_SECONDS=6, **FAST)
        defaults = batches.Defaults(model=model, aspect_ratio="1:1", image_size="1K")
        prompts = ["an owl at night [batch:after=8]"] + [f"a night owl {i}" for i in range(9)]
        plan = batches.check(user, batches.parse_lines("\n".join(prompts), defaults))
        batch = batches.start(user, "overnight", plan, economy_mode=True)
        wait_for(
            lambda: UpstreamBatch.objects.filter(
                batch=batch, phase="waiting", polls__gte=1
            ).exists(),
            timeout=60,
            message="the batch never reached Google",
        )
        os.killpg(doomed.pid, signal.SIGKILL)  # with the next look's countdown in its hands
        doomed.wait(timeout=10)
        assert Generation.objects.in_flight().count() == 10

        start_worker(2, purge=False, NANOWEB_JOB_LEASE_SECONDS=6, **FAST)

        def finished():
            engine.reconcile()  # what beat does every minute (tasks.reconcile)
            economy.reconcile()
            return Generation.objects.filter(status="succeeded").count() == 10

        wait_for(finished, timeout=120, interval=0.5, message="the rows never finished")
        time.sleep(2)  # let any duplicate message run and prove harmless
        health = httpx.get(f"{url}/healthz", timeout=10).json()["batch"]

    assert health["created"] == 1 and health["rows"] == 10
    assert health["created_by_display_name"] == {batch.upstream_batches.get().display_name: 1}
    half = pricing.batch_price(route)
    for job in Generation.objects.all():
        assert job.attempts == 1
        assert Image.objects.filter(generation=job).count() == 1
        assert LedgerEntry.objects.filter(generation=job, kind="settle").count() == 1
        assert job.usage["upstream_cost_micros"] == job.actual_micros
        assert job.route_id == route.pk and half is not None
    s = quotas.summary(user)
    assert (s.images_today, s.reserved_month) == (10, 0)
    assert quotas.ledger_problems() == []
