"""Shared people and helpers: alice (owner), bob (alice's teammate), charlie (no access)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from accounts.models import Team
from tests.factories import REPO, database_url, make_user, route_sandbox


@pytest.fixture(autouse=True)
def _private_media(tmp_path_factory, settings):
    settings.MEDIA_ROOT = tmp_path_factory.mktemp("media")
    # Real hashing costs a third of a second per user; tests make hundreds of users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The hashed-manifest storage needs collectstatic; tests serve static files as they are.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _not_across_quota_midnight():
    """Daily quotas end at midnight in NANOWEB_QUOTA_TIMEZONE (and months on the 1st). A
    test that starts just before would count its images on two days; wait the minute or
    two out instead. Costs nothing except once a day at that midnight."""
    from django.utils import timezone

    from accounts.periods import next_midnight

    now = timezone.now()
    left = (next_midnight(now) - now).total_seconds()
    if left < 150:  # the longest tests (chaos, crash) take well under this
        time.sleep(left + 1)


@pytest.fixture
def no_broker(monkeypatch):
    """Jobs are admitted but not sent to a broker; the test drives the engine itself."""
    from generations import queue

    monkeypatch.setattr(queue, "enqueue", lambda ids: None)


@pytest.fixture
def team(db):
    return Team.objects.create(name="Acme")


@pytest.fixture
def alice(team):
    return make_user("alice@example.com", team=team, name="Alice")


@pytest.fixture
def bob(team):
    return make_user("bob@example.com", team=team, name="Bob")


@pytest.fixture
def charlie(db):
    return make_user("charlie@example.com", name="Charlie")


@pytest.fixture
def sandbox_url():
    from generations.sandbox.server import running_sandbox

    with running_sandbox() as url:
        yield url


@pytest.fixture(autouse=True)
def _private_redis_state(settings):
    """Breaker and limiter state in Redis outlives a test database; give each test its
    own key prefix (worker processes get it too) and clear it afterwards."""
    settings.NANOWEB_REDIS_PREFIX = f"nanoweb-test-{uuid.uuid4().hex[:12]}:"
    yield
    if settings.REDIS_URL and settings.NANOWEB_RESILIENCE_STORE == "redis":
        from generations.resilience.store import get_store

        store = get_store()
        names = list(store.redis.scan_iter(store.prefix + "*"))
        if names:
            store.redis.delete(*names)


@pytest.fixture(autouse=True)
def _catalog(request):
    """Transactional tests start from a flushed database; put the migration's catalogue
    back so every test sees the models a real install has."""
    marker = request.node.get_closest_marker("django_db")
    if {"transactional_db", "live_server"} & set(request.fixturenames) or (
        marker and marker.kwargs.get("transaction")
    ):
        from generations.catalog import seed_models
        from generations.models import ModelSpec

        request.getfixturevalue("transactional_db")
        seed_models(ModelSpec)


@pytest.fixture
def sandbox_model(db, sandbox_url, settings):
    """The Sandbox model routed to a real sandbox upstream server on loopback."""
    return route_sandbox(sandbox_url, settings)


@pytest.fixture
def start_worker(transactional_db, settings):
    """Start real Celery worker processes on the test database and the configured broker.

    Each worker is its own process group, so a test can kill one with everything it
    forked, as a crashed machine would. Returns the ``Popen``; all are stopped at the end.
    """
    broker_dir = Path(settings.CELERY_BROKER_DIR) / "queue"
    if broker_dir.exists():
        shutil.rmtree(broker_dir)
        broker_dir.mkdir(parents=True)
    procs = []

    def start(concurrency: int = 2, *, purge: bool = True, **env_extra) -> subprocess.Popen:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "NANOWEB_BACKOFF_BASE_SECONDS": "0.05",
            "NANOWEB_BACKOFF_CAP_SECONDS": "0.2",
            "NANOWEB_REDIS_PREFIX": settings.NANOWEB_REDIS_PREFIX,
            **{k: str(v) for k, v in env_extra.items()},
        }
        log = Path(settings.VAR_DIR) / f"test-worker-{len(procs) + 1}.log"
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "nanoweb",
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                    str(concurrency),
                    "--loglevel",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    *(["--purge"] if purge else []),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        deadline = time.monotonic() + 60
        while "ready." not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Celery worker did not start:\n{log.read_text()}")
            time.sleep(0.2)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def celery_worker(start_worker, request):
    """One real worker (``@pytest.mark.worker(concurrency=N)`` for more than 2 processes)."""
    marker = request.node.get_closest_marker("worker")
    return start_worker(marker.kwargs.get("concurrency", 2) if marker else 2)
