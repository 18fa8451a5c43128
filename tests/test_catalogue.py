"""The zh_Hans catalogue: compiled, with no fuzzy guesses, and every translation keeping
its sentence's placeholders (a lost %(cost)s would show a Chinese sentence without the
amount, or fail when it is formatted)."""

import gettext
import os
import re
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
PO = ROOT / "nanoweb/locale/zh_Hans/LC_MESSAGES/django.po"
# What `make messages` leaves out: the API stays English, tests and benchmarks are not
# shown to anyone, and the rest is not ours.
NOT_SCANNED = [".venv", "var", "tests", "bench", "*.egg-info", "node_modules"]
# makemessages writes each file's sentences to the nearest `locale` directory it finds:
# the test hides nanoweb/locale so that every sentence goes to its copy.
HIDDEN = ["locale"]
ESCAPE = re.compile(r"\\(.)")
UNESCAPED = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
PLACEHOLDER = re.compile(r"%%|%\([a-z_]+\)[sd]|\{[a-z_]*\}")


def _entries(po=PO):
    """(context, msgid, msgstr, flags) for each entry; a plural's first form stands in."""
    for block in po.read_text(encoding="utf-8").split("\n\n")[1:]:
        if block.lstrip().startswith("#~"):
            continue  # obsolete: no longer in the code
        fields, key, flags = {}, None, ""
        for line in block.splitlines():
            if line.startswith("#,"):
                flags = line
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[key] += line[1:-1]
            else:
                key, _, value = line.partition(" ")
                fields[key] = value[1:-1]
        text = {k: ESCAPE.sub(lambda m: UNESCAPED[m[1]], v) for k, v in fields.items()}
        yield (
            text.get("msgctxt"),
            text["msgid"],
            text.get("msgstr", text.get("msgstr[0]", "")),
            flags,
        )


def test_it_has_no_fuzzy_entries():
    fuzzy = [msgid for _, msgid, _, flags in _entries() if "fuzzy" in flags]
    assert fuzzy == [], "makemessages guessed these; translate them: " + repr(fuzzy[:5])


def test_every_translation_keeps_its_placeholders():
    wrong = [
        (msgid, msgstr)
        for _, msgid, msgstr, _ in _entries()
        if msgstr and sorted(PLACEHOLDER.findall(msgid)) != sorted(PLACEHOLDER.findall(msgstr))
    ]
    assert wrong == []


def test_the_compiled_catalogue_matches_the_source():
    """django.mo is committed: a .po edited without `compilemessages` fails here."""
    with PO.with_suffix(".mo").open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    stale = []
    for context, msgid, msgstr, _ in _entries():
        if not msgstr:
            continue
        got = compiled.pgettext(context, msgid) if context else compiled.gettext(msgid)
        if got != msgstr:
            stale.append(msgid)
    assert stale == []


@pytest.mark.parametrize("word", ["提示词", "生成", "图库", "登录"])
def test_the_studio_words_are_translated(word):
    assert any(msgstr.startswith(word) or word in msgstr for _, _, msgstr, _ in _entries())


@pytest.mark.skipif(
    not shutil.which("xgettext") and not os.environ.get("NANOWEB_CI"),
    reason="GNU gettext is not installed (apt-get install gettext); CI has it",
)
def test_every_sentence_in_the_code_is_translated(tmp_path, settings, monkeypatch):
    """`makemessages` over the code, merged into a copy of the catalogue: a template or
    Python sentence added without its Chinese fails here, naming it."""
    copy = tmp_path / "zh_Hans/LC_MESSAGES/django.po"
    copy.parent.mkdir(parents=True)
    shutil.copy(PO, copy)
    settings.LOCALE_PATHS = [tmp_path]
    monkeypatch.chdir(ROOT)
    before = PO.read_bytes()
    call_command(
        "makemessages",
        locale=["zh_Hans"],
        ignore_patterns=NOT_SCANNED + HIDDEN,
        no_location=True,
        verbosity=0,
    )
    assert PO.read_bytes() == before, "the test must leave the real catalogue alone"
    missing = [
        msgid for _, msgid, msgstr, flags in _entries(copy) if not msgstr or "fuzzy" in flags
    ]
    assert missing == [], (
        f"{len(missing)} sentences have no zh_Hans translation; run `make messages`, "
        f"translate them in {PO.relative_to(ROOT)}, then `make messages` again: {missing[:10]!r}"
    )
