"""A worker killed (SIGKILL, with everything it forked) while it holds a job in a slow
upstream call: with the production lease, heartbeat and sweep — a real beat, real
workers, nothing driven by the test — another worker restarts the job within 30 s, and
the job still finishes exactly once."""

import os
import signal
import time

import pytest
from django.conf import settings as django_settings

from accounts import quotas
from accounts.models import LedgerEntry
from generations import jobs
from generations.models import Generation, Image
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import job_request, route_sandbox, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
CALL_SECONDS = 12  # each upstream call: long enough to be killed in, well past a heartbeat


def test_a_killed_workers_job_restarts_within_thirty_seconds(
    alice, settings, start_worker, start_beat
):
    assert django_settings.NANOWEB_JOB_LEASE_SECONDS + django_settings.NANOWEB_SWEEP_SECONDS < 30
    config = SandboxConfig(latency_min=CALL_SECONDS, latency_max=CALL_SECONDS)
    with running_sandbox(config) as url:
        model = route_sandbox(url, settings)
        doomed = start_worker(1)
        start_beat()
        (job,) = jobs.submit(alice, job_request(model, prompt="a survivor"))
        wait_for(
            lambda: Generation.objects.filter(pk=job.pk, status="running").exists(),
            timeout=60,
            message="the first worker never started the job",
        )
        claimed = Generation.objects.get(pk=job.pk).lease_until
        wait_for(  # the heartbeat renewed the lease while the call runs
            lambda: Generation.objects.get(pk=job.pk).lease_until > claimed,
            timeout=django_settings.NANOWEB_JOB_HEARTBEAT_SECONDS + 5,
            message="the lease was never renewed during the call",
        )
        os.killpg(doomed.pid, signal.SIGKILL)
        killed = time.monotonic()
        doomed.wait(timeout=10)
        start_worker(2, purge=False)

        wait_for(
            lambda: Generation.objects.filter(pk=job.pk, attempts=2, status="running").exists(),
            timeout=120,
            interval=0.1,
            message="no worker restarted the job",
        )
        restart_delay = time.monotonic() - killed
        wait_for(
            lambda: Generation.objects.filter(pk=job.pk, status="succeeded").exists(),
            timeout=CALL_SECONDS + 60,
            message="the restarted job never finished",
        )

    print(f"restart delay after SIGKILL: {restart_delay:.1f} s")
    assert restart_delay < 30
    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    assert Image.objects.filter(generation=job).count() == 1
    assert LedgerEntry.objects.filter(generation=job, kind="settle").count() == 1
    assert LedgerEntry.objects.filter(generation=job, kind="release").count() == 0
    s = quotas.summary(alice)
    assert (s.images_today, s.reserved_month, s.spent_month) == (1, 0, job.actual_micros)
    assert quotas.ledger_problems() == []
