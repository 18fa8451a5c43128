"""A live nanoweb under ASGI (uvicorn), with a Celery worker and the sandbox upstream."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from accounts import tokens
from tests.factories import REPO, database_url, kill_groups


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_api(start_worker, sandbox_model, settings):
    """Start a uvicorn process serving nanoweb's ASGI app on the test database (a Celery
    worker too, once) → its base URL and process; all are stopped at the end."""
    start_worker(2)
    procs = []

    def start() -> tuple[str, subprocess.Popen]:
        base, proc = _start_uvicorn(settings)
        procs.append(proc)
        return base, proc

    yield start
    kill_groups(procs)


@pytest.fixture
def api_server(start_api):
    """Base URL of a uvicorn process serving nanoweb's ASGI app on the test database."""
    return start_api()[0]


def _start_uvicorn(settings) -> tuple[str, subprocess.Popen]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "NANOWEB_REDIS_PREFIX": settings.NANOWEB_REDIS_PREFIX,
        "SECRET_KEY": settings.SECRET_KEY,
        "NANOWEB_TOKEN_KEY": settings.NANOWEB_TOKEN_KEY,
        "NANOWEB_SANDBOX": "on",
        "NANOWEB_SANDBOX_URL": settings.NANOWEB_SANDBOX_URL,
        "NANOWEB_API_WAIT_SECONDS": "60",
        # A killed web process's first attempts are swept back to the workers this soon.
        "NANOWEB_JOB_LEASE_SECONDS": "4",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    log = Path(settings.VAR_DIR) / "test-asgi.log"
    for _ in range(3):  # a port found free can be taken before uvicorn binds it: try another
        port = free_port()
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "nanoweb.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"
        if _serving(base, proc):
            return base, proc
        if proc.poll() is None:
            proc.kill()
    pytest.fail(f"uvicorn did not start:\n{log.read_text()}")


def _serving(base: str, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


@pytest.fixture
def alice_token(alice):
    return tokens.create(alice, "tests").secret
