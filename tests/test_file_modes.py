"""What nanoweb creates under var/ is its owner's (and group's) only: the database,
the generated secrets, media. A fresh instance in a subprocess, so the process's own
umask is what is tested."""

import os
import stat
import subprocess
import sys

from tests.factories import REPO

SCRIPT = """
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from generations import crypto
crypto.encrypt("a provider key")
default_storage.save("images/2026/12/a.png", ContentFile(b"not really a png"))
"""


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_var_files_are_not_readable_by_others(tmp_path):
    var = tmp_path / "var"
    env = {"PATH": os.environ["PATH"], "NANOWEB_VAR_DIR": str(var), "HOME": str(tmp_path)}
    for args in (["migrate", "-v0"], ["shell", "-c", SCRIPT]):
        subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, check=True, timeout=300
        )
    assert mode(var) == 0o750
    assert mode(var / "secret_key") == 0o600
    assert mode(var / "encryption_keys") == 0o600
    assert mode(var / "nanoweb.sqlite3") & 0o007 == 0
    media = var / "media"
    assert mode(media / "images/2026/12/a.png") & 0o027 == 0
    assert mode(media / "images") & 0o007 == 0
    for path in var.rglob("*"):
        assert mode(path) & 0o007 == 0, f"{path} is readable by others"
