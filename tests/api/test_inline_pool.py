"""The web process's pool for API work: its threads keep their database connections,
a broken one is replaced, and when every thread is busy the work still runs."""

import asyncio

import pytest
from django.db import connection, connections

from accounts.models import User
from generations.api import inline

pytestmark = pytest.mark.django_db(transaction=True)


def _connection_and_count():
    users = User.objects.count()  # connects, if this thread had no connection yet
    return id(connection.connection), users


def test_a_pool_thread_keeps_its_connection_between_calls(settings, alice):
    settings.NANOWEB_API_INLINE_THREADS = 1  # one thread: both calls run on it
    first = asyncio.run(inline.call(_connection_and_count))
    second = asyncio.run(inline.call(_connection_and_count))
    assert first == second and first[1] == 1


def test_a_connection_that_broke_is_replaced(settings, alice, monkeypatch):
    settings.NANOWEB_API_INLINE_THREADS = 1
    # SQLite's connection is a file, never "unusable"; PostgreSQL's answers SELECT 1 or not.
    monkeypatch.setattr(type(connections["default"]), "is_usable", lambda self: False)

    def break_it():
        broken = connection.connection
        broken.close()  # the server went away under us
        connection.errors_occurred = True
        return broken  # kept alive here, so no new connection can reuse its id

    asyncio.run(inline.call(User.objects.count))
    broken = asyncio.run(inline.call(break_it))
    after, users = asyncio.run(inline.call(_connection_and_count))
    assert after != id(broken) and users == 1


def test_with_every_thread_busy_the_work_runs_as_django_would(settings, alice):
    settings.NANOWEB_API_INLINE_THREADS = 1
    assert inline._pool.take(1) == 1  # the only thread is taken
    try:
        assert asyncio.run(inline.call(_connection_and_count))[1] == 1
    finally:
        with inline._pool._lock:
            inline._pool._busy -= 1
