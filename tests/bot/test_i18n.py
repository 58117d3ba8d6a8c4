"""Every message in the code has a translation in both catalogs, with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir

from bot.i18n import LOCALES, read_catalog, translator

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{(\w*)\}")


def _code_messages() -> set[str]:
    found: set[str] = set()
    for package in ("bot", "handlers", "campus"):
        for _file, _line, message, _comments, _ctx in extract_from_dir(
            ROOT / package,
            method_map=[("**.py", "python")],
            keywords={"_": None, "N_": None},
        ):
            if isinstance(message, str):
                found.add(message)
    return found


def test_the_code_has_messages() -> None:
    assert len(_code_messages()) > 20


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated(locale: str) -> None:
    catalog = read_catalog(locale)
    missing = []
    for msgid in sorted(_code_messages()):
        entry = catalog.get(msgid)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(msgid)
            continue
        assert set(PLACEHOLDER.findall(msgid)) == set(PLACEHOLDER.findall(str(entry.string))), (
            f"{locale}: placeholders differ for {msgid!r}"
        )
    assert not missing, f"{locale} lacks translations for: {missing}"


def test_translator_formats_and_falls_back() -> None:
    zh = translator("zh_CN")
    assert zh("Welcome back, {name}.", name="张三") == "欢迎回来，张三。"
    assert translator("en")("Welcome back, {name}.", name="Jane") == "Welcome back, Jane."
    assert translator("fr").locale == "zh_CN"
