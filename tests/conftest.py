"""Shared people and helpers: alice (owner), bob (alice's teammate), charlie (no access)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from accounts.models import Team
from tests.factories import database_url, kill_groups, make_user, route_sandbox, start_celery


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
def _english_unless_asked():
    """Each test starts in the default language: a request a test made in Chinese leaves
    Chinese active in this thread, and the next test's sentences would come out in it."""
    from django.utils import translation

    translation.activate("en")
    yield
    translation.deactivate()


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


@pytest.fixture(scope="session", autouse=True)
def _close_api_threads(django_db_setup, django_db_blocker):
    """The API's pool threads keep their database connections; PostgreSQL cannot drop
    the test database while they are open."""
    yield
    from generations.api import inline

    inline.close()


@pytest.fixture
def no_broker(monkeypatch):
    """Jobs are admitted but not sent to a broker, nor run by the API's fast path; the
    test drives the engine itself."""
    from django.conf import settings

    from generations import queue

    monkeypatch.setattr(queue, "enqueue", lambda ids, countdown=None: None)
    monkeypatch.setattr(settings, "NANOWEB_API_INLINE_THREADS", 0)


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
        args = ["worker", "--pool", "prefork", "--concurrency", str(concurrency)]
        args += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        args += ["--without-heartbeat", *(["--purge"] if purge else [])]
        log = Path(settings.VAR_DIR) / f"test-worker-{len(procs) + 1}.log"
        procs.append(start_celery(args, env, log, "ready.", "worker"))
        return procs[-1]

    yield start
    kill_groups(procs)


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
        args = ["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "celerybeat-schedule")]
        log = Path(settings.VAR_DIR) / "test-beat.log"
        procs.append(start_celery(args, env, log, "Sending due task", "beat"))
        return procs[-1]

    yield start
    kill_groups(procs)


@pytest.fixture
def celery_worker(start_worker, request):
    """One real worker (``@pytest.mark.worker(concurrency=N)`` for more than 2 processes)."""
    marker = request.node.get_closest_marker("worker")
    return start_worker(marker.kwargs.get("concurrency", 2) if marker else 2)
