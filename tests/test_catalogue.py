"""The zh_Hans catalogue: compiled, with no fuzzy guesses, and every translation keeping
its sentence's placeholders (a lost %(cost)s would show a Chinese sentence without the
amount, or fail when it is formatted)."""

import gettext
import re
from pathlib import Path

import pytest

PO = Path(__file__).resolve().parent.parent / "nanoweb/locale/zh_Hans/LC_MESSAGES/django.po"
PLACEHOLDER = re.compile(r"%%|%\([a-z_]+\)[sd]|\{[a-z_]*\}")


def _entries():
    """(context, msgid, msgstr, flags) for each entry; a plural's first form stands in."""
    for block in PO.read_text(encoding="utf-8").split("\n\n")[1:]:
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
        text = {k: v.replace('\\"', '"').replace("\\n", "\n") for k, v in fields.items()}
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
