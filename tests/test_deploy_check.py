"""`check --deploy` is clean with the production environment the README and
deploy/env.example give (secrets filled in)."""

import os
import secrets
import subprocess
import sys

from tests.factories import REPO


def example_environment() -> dict:
    env = {}
    for line in (REPO / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    env["SECRET_KEY"] = secrets.token_urlsafe(50)
    env["NANOWEB_TOKEN_KEY"] = secrets.token_urlsafe(50)
    env["NANOWEB_ENCRYPTION_KEYS"] = "VGhpcyBpcyBub3QgYSByZWFsIGtleSBidXQgMzJieXQ="
    return env


def test_check_deploy_is_clean_with_the_example_environment(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "NANOWEB_VAR_DIR": str(tmp_path),
        **example_environment(),
    }
    env.pop("POSTGRES_PASSWORD", None)
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no issues" in run.stdout


def test_a_database_server_without_a_shared_token_key_is_warned(tmp_path):
    env = {"PATH": os.environ["PATH"], "NANOWEB_VAR_DIR": str(tmp_path), **example_environment()}
    env.pop("NANOWEB_TOKEN_KEY")
    env["DATABASE_URL"] = "postgres://nanoweb:x@127.0.0.1:1/nanoweb"
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0 and "nanoweb.W001" in run.stderr + run.stdout
