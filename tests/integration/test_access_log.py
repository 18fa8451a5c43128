"""The web process as the Procfile starts it (gunicorn, uvicorn workers) keeps API tokens
out of its access log, even when a Google client sends one as ``?key=``."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from accounts import tokens
from tests.factories import REPO, database_url, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def web_command() -> str:
    line = next(
        line for line in (REPO / "Procfile").read_text().splitlines() if line.startswith("web:")
    )
    return line.removeprefix("web:").strip()


@pytest.fixture
def web(settings):
    """(base URL, log path) of the Procfile's web process on the test database."""
    log = Path(settings.VAR_DIR) / "test-web.log"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SECRET_KEY": settings.SECRET_KEY,
        "NANOWEB_TOKEN_KEY": settings.NANOWEB_TOKEN_KEY,
        "NANOWEB_REDIS_PREFIX": settings.NANOWEB_REDIS_PREFIX,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["sh", "-c", web_command()],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def serving():
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(base + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(serving, timeout=60, message=f"the web process did not start:\n{log.read_text()}")
    yield base, log
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def test_it_logs_a_key_in_the_url_without_the_key(web, alice):
    base, log = web
    token = tokens.create(alice, "curl").secret
    listed = httpx.get(f"{base}/v1beta/models?key={token}&pageSize=2", timeout=30)
    assert listed.status_code == 200 and "models" in listed.json()
    refused = httpx.get(f"{base}/api/v1/generations?key={token}", timeout=30)
    assert refused.status_code == 401 and "not in the URL" in refused.json()["error"]["message"]

    wait_for(lambda: log.read_text().count('HTTP/1.1" ') >= 3, timeout=10)  # /healthz too
    text = log.read_text()
    secret = token.split("_", 2)[2]
    assert token not in text and secret not in text and "key=" not in text
    assert '"GET /v1beta/models HTTP/1.1" 200' in text
    assert '"GET /api/v1/generations HTTP/1.1" 401' in text
