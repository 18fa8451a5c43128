"""A running job's lease, renewed by the heartbeat while its call runs, and never
renewed once the job was taken over (real threads on a real database)."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from generations import engine, leases
from generations.models import Generation
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import route_sandbox, submit_one, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_broker")]


@pytest.fixture
def short_leases(settings):
    settings.NANOWEB_JOB_LEASE_SECONDS = 1
    settings.NANOWEB_JOB_HEARTBEAT_SECONDS = 0.2


def test_a_call_longer_than_the_lease_keeps_its_job(alice, settings, short_leases):
    with running_sandbox(SandboxConfig(latency_min=3.0, latency_max=3.0)) as url:
        model = route_sandbox(url, settings)
        job = submit_one(model, alice)

        def work():
            try:
                engine.run_generation(job.pk)
            finally:
                connection.close()

        worker = threading.Thread(target=work)
        worker.start()
        reclaimed = 0
        while worker.is_alive():  # what beat does, far more often than it would
            reclaimed += engine.sweep()["reclaimed"]
            time.sleep(0.1)
        worker.join()

    job.refresh_from_db()
    assert reclaimed == 0
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert list(job.attempt_log.values_list("outcome", flat=True)) == ["ok"]


def test_a_heartbeat_never_renews_a_lease_the_job_lost(alice, sandbox_model, short_leases):
    job = submit_one(sandbox_model, alice)
    # Waiting on a queue-style upstream: a takeover's claim keeps the attempt count, so
    # only the lease itself tells the two runs apart.
    Generation.objects.filter(pk=job.pk).update(upstream_job={"id": "up-1"})
    first = engine.claim(job.pk)
    with leases.kept(first) as held:
        wait_for(lambda: Generation.objects.get(pk=job.pk).lease_until > first.lease_until)
        Generation.objects.filter(pk=job.pk).update(  # the worker stalls past its lease
            lease_until=timezone.now() - timedelta(seconds=1)
        )
        second = engine.claim(job.pk)  # another worker takes the job over
        assert second is not None and second.attempts == first.attempts
        wait_for(lambda: held.lost, timeout=5, message="the old heartbeat kept beating")
        time.sleep(0.5)
        assert Generation.objects.get(pk=job.pk).lease_until == second.lease_until


def test_a_job_done_before_its_first_beat_costs_no_renewal(alice, sandbox_model, settings):
    job = submit_one(sandbox_model, alice)
    claimed = engine.claim(job.pk)
    with leases.kept(claimed) as held:
        pass
    assert held.due - time.monotonic() > settings.NANOWEB_JOB_HEARTBEAT_SECONDS / 2
    assert Generation.objects.get(pk=job.pk).lease_until == claimed.lease_until
