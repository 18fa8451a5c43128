"""A worker machine dies (SIGKILL to the worker and everything it forked) in the middle
of an upstream call. The job must still finish exactly once: one image stored, one
settlement, nothing reserved. Runs on whichever broker is configured (the embedded
filesystem broker, or Redis in the PostgreSQL + Redis CI pass)."""

import os
import signal
import time

import pytest

from accounts import quotas
from accounts.models import LedgerEntry
from generations import engine, jobs
from generations.models import Generation, Image
from generations.sandbox.server import SandboxConfig, running_sandbox
from tests.factories import job_request, route_sandbox, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
LEASE = 6  # seconds: how long a dead worker's claim blocks others (a 2 s call fits well inside)


def test_a_killed_worker_loses_nothing_and_nothing_happens_twice(alice, settings, start_worker):
    with running_sandbox(SandboxConfig(latency_min=2.0, latency_max=2.0)) as url:
        model = route_sandbox(url, settings)
        doomed = start_worker(1, NANOWEB_JOB_LEASE_SECONDS=LEASE)
        (job,) = jobs.submit(alice, job_request(model, prompt="a survivor"))
        wait_for(
            lambda: Generation.objects.filter(pk=job.pk, status="running").exists(),
            timeout=30,
            message="the first worker never started the job",
        )
        time.sleep(0.5)  # now inside the 2-second upstream call
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)

        start_worker(1, purge=False, NANOWEB_JOB_LEASE_SECONDS=LEASE)

        def finished():
            engine.reconcile()  # what beat does every minute
            return Generation.objects.filter(pk=job.pk, status="succeeded").exists()

        wait_for(finished, timeout=60, interval=0.5, message="the job never finished")
        time.sleep(3)  # let any duplicate delivery run and prove harmless

    job.refresh_from_db()
    assert job.status == "succeeded" and job.attempts == 2
    assert Image.objects.filter(generation=job).count() == 1
    assert LedgerEntry.objects.filter(generation=job, kind="settle").count() == 1
    assert LedgerEntry.objects.filter(generation=job, kind="release").count() == 0
    s = quotas.summary(alice)
    assert (s.images_today, s.reserved_month, s.spent_month) == (1, 0, job.actual_micros)
    assert quotas.ledger_problems() == []
