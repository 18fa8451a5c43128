"""The stylesheets and scripts the pages load are well-formed (a merge that drops a
closing brace silently unstyles every page after it)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parent.parent / "static"
TEMPLATES = STATIC.parent / "templates"


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


def test_no_template_carries_inline_script_or_style():
    """The Content-Security-Policy runs only this site's files: an inline <script>, a
    <style> block or an on…= handler attribute would silently do nothing."""
    inline = re.compile(
        r"<style\b|<script(?![^>]*\bsrc=)(?![^>]*application/json)|\son[a-z]+=[\"']", re.I
    )
    found = [
        f"{path.relative_to(TEMPLATES)}:{n}"
        for path in TEMPLATES.rglob("*.html")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if inline.search(line) and "{% comment" not in line
    ]
    assert found == []
