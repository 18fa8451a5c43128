"""Real Celery beat for the integration tests (the workers are in tests/conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.factories import REPO, database_url


@pytest.fixture
def start_beat(transactional_db, settings, tmp_path):
    """Start a real Celery beat (its own process group) on the test database and broker,
    so the sweep runs as in production rather than by the test's hand."""
    procs = []

    def start(**env_extra) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "NANOWEB_REDIS_PREFIX": settings.NANOWEB_REDIS_PREFIX,
            **{k: str(v) for k, v in env_extra.items()},
        }
        log = Path(settings.VAR_DIR) / "test-beat.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "nanoweb",
                    "beat",
                    "--loglevel",
                    "INFO",
                    "--schedule",
                    str(tmp_path / "celerybeat-schedule"),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while "Sending due task" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Celery beat did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
