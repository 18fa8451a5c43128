"""`make run`'s supervisor with real processes: a child killed with SIGKILL comes back,
the others run on, and SIGTERM to the supervisor stops them all."""

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.api.conftest import free_port
from tests.factories import REPO, wait_for

pytestmark = pytest.mark.integration

CHILD = (
    "{python} -c \"import os, time; print('{name} pid', os.getpid(), flush=True); time.sleep(600)\""
)


def pids(log, name: str) -> list[int]:
    return [int(p) for p in re.findall(rf"{name}\.1\s+\| {name} pid (\d+)", log.read_text())]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_killed_process_is_restarted_and_the_others_run_on(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text(
        "".join(
            f"{name}: {CHILD.format(python=sys.executable, name=name)}\n"
            for name in ("web", "worker")
        )
    )
    log = tmp_path / "out.log"
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "nanoweb.supervise", "-f", str(procfile), "web", "worker"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: pids(log, "web") and pids(log, "worker"), timeout=30)
        (web,), (worker,) = pids(log, "web"), pids(log, "worker")
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: len(pids(log, "worker")) == 2, timeout=30, message=log.read_text())
        assert "worker.1 exited with code -9; restarting" in log.read_text()
        assert pids(log, "web") == [web] and alive(web)  # untouched

        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
    new_worker = pids(log, "worker")[1]
    wait_for(lambda: not alive(web) and not alive(new_worker), timeout=10)


def test_the_sign_in_banner_comes_again_once_the_web_process_answers(tmp_path):
    port = free_port()
    procfile = tmp_path / "Procfile"
    # The web process answers only after its start-up lines, as gunicorn does.
    (tmp_path / "web.py").write_text(
        "import http.server, time\n"
        "print('booting', flush=True)\n"
        "time.sleep(1)\n"
        f"http.server.test(http.server.SimpleHTTPRequestHandler, port={port}, bind='127.0.0.1')\n"
    )
    procfile.write_text(f"web: {sys.executable} web.py\n")
    (tmp_path / "healthz").write_text("ok")
    log = tmp_path / "out.log"
    banner = "nanoweb is ready at http://127.0.0.1/\nSign in as admin@example.com."
    with log.open("w") as out:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nanoweb.supervise",
                "-f",
                str(procfile),
                "-d",
                str(tmp_path),
                "--ready-url",
                f"http://127.0.0.1:{port}/healthz",
                "--ready-banner",
                banner,
            ],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "Sign in as admin@example.com." in log.read_text(), timeout=30)
        text = log.read_text()
        assert text.index("booting") < text.index("system | nanoweb is ready at")
        assert "system | Sign in as admin@example.com." in text
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
