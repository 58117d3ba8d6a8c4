"""Translations: gettext catalogs in locales/<lang>/LC_MESSAGES/*.po, loaded with Babel.

`messages.po` holds most messages; a feature may keep its own catalog beside it
(`returns.po`, `meals.po`, …), merged into one at load. The .po files are compiled in memory at
start-up when no .mo is present, so a checkout runs without a build step; the Docker image
compiles them ahead of time (one `messages.mo` per locale, from all the catalogs).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

import locales

LOCALES = ("zh_CN", "en")
LOCALE_DIR = Path(locales.__file__).parent
DOMAIN = "messages"


class Translate(Protocol):
    def __call__(self, message: str, /, **params: Any) -> str: ...


def N_(message: str) -> str:
    """Mark a string for extraction; it is translated where it is shown."""
    return message


@cache
def _translations(locale: str) -> Translations:
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    mo = folder / f"{DOMAIN}.mo"
    if mo.exists():
        with mo.open("rb") as fp:
            return Translations(fp, domain=DOMAIN)
    catalog = read_catalog(locale)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def catalog_files(locale: str) -> list[Path]:
    """The locale's .po files: messages.po first, then the features' catalogs by name."""
    folder = LOCALE_DIR / locale / "LC_MESSAGES"
    main = folder / f"{DOMAIN}.po"
    return [main, *sorted(p for p in folder.glob("*.po") if p != main)]


def read_catalog(locale: str) -> Catalog:
    """All of a locale's catalogs merged into one (defined twice: the first translated wins)."""
    merged: Catalog | None = None
    for path in catalog_files(locale):
        with path.open("rb") as fp:
            catalog = read_po(fp, locale=locale)
        if merged is None:
            merged = catalog
            continue
        for message in catalog:
            known = merged.get(message.id) if message.id else None
            if message.id and (known is None or not known.string):
                merged[message.id] = message
    if merged is None:
        raise FileNotFoundError(f"no catalog for {locale}")
    return merged


class Translator:
    """`_("Hello {name}", name=…)` in one locale."""

    __slots__ = ("_gettext", "locale")

    def __init__(self, locale: str) -> None:
        if locale not in LOCALES:
            raise ValueError(f"unknown locale {locale!r}")
        self.locale = locale
        self._gettext = _translations(locale).gettext

    def __call__(self, message: str, /, **params: Any) -> str:
        text: str = self._gettext(message)
        return text.format(**params) if params else text


@cache
def translator(locale: str) -> Translator:
    return Translator(locale if locale in LOCALES else LOCALES[0])


def load_all() -> Mapping[str, Translator]:
    """Load every catalog now, so a broken one fails start-up rather than a user's message."""
    return {locale: translator(locale) for locale in LOCALES}
