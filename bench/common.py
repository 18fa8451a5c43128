"""What the benchmarks share: a scratch instance, its processes and the results file.

Each benchmark runs on its own ``var/`` directory under the system's temp folder,
with SQLite and the filesystem broker unless ``DATABASE_URL`` / ``REDIS_URL`` point
elsewhere (use scratch services for that: the benchmarks create users and jobs).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def scratch_instance(prefix: str) -> Path:
    """Create a scratch var/ directory, point Django at it, migrate; returns the directory."""
    var = Path(tempfile.mkdtemp(prefix=f"nanoweb-bench-{prefix}-"))
    os.environ.update(
        NANOWEB_VAR_DIR=str(var),
        DJANGO_SETTINGS_MODULE="nanoweb.settings",
        NANOWEB_SANDBOX="on",
        GEMINI_API_KEY="",
    )
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{var / 'bench.sqlite3'}")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    logging.getLogger("generations.sandbox").setLevel(logging.WARNING)
    return var


def describe_services() -> dict:
    """Which database, broker and limiter store the scratch instance runs on."""
    from django.conf import settings

    return {
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "broker": settings.CELERY_BROKER_URL.split(":", 1)[0],
        "store": settings.NANOWEB_RESILIENCE_STORE,
    }


def start_process(
    args: list[str], log: Path, ready, *, what: str, timeout: float = 90, env: dict | None = None
) -> subprocess.Popen:
    """Start ``args`` in its own session, logging to ``log``; wait until ``ready()``.
    ``env``: the whole environment (default: this process's)."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            args,
            cwd=REPO,
            env=os.environ.copy() if env is None else env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"The {what} did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return proc


def start_worker(var: Path, concurrency: int) -> subprocess.Popen:
    """A real Celery worker (prefork, as in production) on the scratch instance."""
    log = var / "worker.log"
    return start_process(
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
            "--purge",
        ],
        log,
        lambda: " ready." in log.read_text(),
        what="Celery worker",
    )


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def print_checks(checks: list[tuple[str, str, str, bool]]) -> bool:
    """Print (measure, value, target, ok) rows; True when every target was met."""
    width = max(len(c[0]) for c in checks)
    print(f"{'measure':<{width}}  {'value':>14}  {'target':>10}  result")
    for name, value, target, ok in checks:
        print(f"{name:<{width}}  {value:>14}  {target:>10}  {'ok' if ok else 'MISSED'}")
    return all(c[3] for c in checks)


def write_results(name: str, result: dict, output: Path | None) -> Path:
    output = output or RESULTS / f"{name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {output}")
    return output
