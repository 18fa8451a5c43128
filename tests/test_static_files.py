"""The stylesheets and scripts the pages load are well-formed (a merge that drops a
closing brace silently unstyles every page after it)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "static"


@pytest.mark.parametrize("path", sorted(STATIC.rglob("*.css")), ids=lambda p: p.name)
def test_every_rule_block_in_a_stylesheet_is_closed(path):
    css = re.sub(r"/\*.*?\*/", "", path.read_text(), flags=re.S)
    depth = 0
    for number, line in enumerate(css.splitlines(), 1):
        depth += line.count("{") - line.count("}")
        assert depth >= 0, f"{path.name}:{number} closes a block that was never opened"
    assert depth == 0, f"{path.name} ends with {depth} block(s) still open"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("path", sorted((STATIC / "js").glob("nanoweb*.js")), ids=lambda p: p.name)
def test_our_scripts_parse(path):
    result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
