"""Reading a person's answers: temperatures, symptoms, regions, in either language."""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation
from functools import cache

from bot.i18n import LOCALES, translator
from campus.health.explain import SYMPTOM_NAMES
from campus.health.model import TEMPERATURE_MAX_TENTHS, TEMPERATURE_MIN_TENTHS

_NUMBER = re.compile(r"^(\d{2}(?:\.\d+)?)\s*(?:°\s*c|℃|度|c)?$", re.IGNORECASE)
_REGION = re.compile(r"^[^<>\"&#\n\r\t]{1,50}$")
_LIST = re.compile(r"[,，、;；/]+")
_SPACE = re.compile(r"\s+")
NONE_WORDS = frozenset({"none", "no", "无", "没有", "都没有", "无症状", "0"})


class BadAnswer(ValueError):
    """An answer that cannot be used; `kind` says which reply to give."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"{kind}: {value!r}")
        self.kind = kind  # unreadable | out_of_range | unknown_symptom | bad_region
        self.value = value


def normalise(text: str) -> str:
    """Full-width digits and punctuation to ASCII, trimmed, case-folded."""
    return unicodedata.normalize("NFKC", text).strip().casefold()


def parse_temperature(text: str) -> int:
    """'36.5', '36.5°C', '３６．５℃' → 365 (tenths); BadAnswer outside 34.0–43.0 or unreadable."""
    value = normalise(text).replace(",", ".")
    match = _NUMBER.match(value)
    if match is None:
        raise BadAnswer("unreadable", text)
    try:
        tenths = int((Decimal(match[1]) * 10).to_integral_value())
    except InvalidOperation:  # pragma: no cover (the pattern admits only numbers)
        raise BadAnswer("unreadable", text) from None
    if not TEMPERATURE_MIN_TENTHS <= tenths <= TEMPERATURE_MAX_TENTHS:
        raise BadAnswer("out_of_range", text)
    return tenths


@cache
def _symptom_words() -> dict[str, str]:
    words: dict[str, str] = {}
    for code, message in SYMPTOM_NAMES.items():
        words[code.replace("_", " ")] = code
        words[code] = code
        for locale in LOCALES:
            words[normalise(translator(locale)(message))] = code
    return words


def symptom_code(text: str) -> str | None:
    """The code of one symptom named in either language ('咳嗽', 'Cough', 'sore throat')."""
    return _symptom_words().get(normalise(text).lstrip("+-✓☑ "))


def parse_symptoms(text: str) -> frozenset[str]:
    """'咳嗽 乏力', 'cough, fatigue', 'none' → codes; BadAnswer naming an unknown word."""
    value = normalise(text)
    if value in NONE_WORDS:
        return frozenset()
    whole = symptom_code(value)
    if whole is not None:
        return frozenset({whole})
    codes = set()
    for chunk in _LIST.split(value):
        whole = symptom_code(chunk)
        words = [chunk] if whole is not None else _SPACE.split(chunk)
        for word in words:
            if not word or word in NONE_WORDS:
                continue
            code = symptom_code(word)
            if code is None:
                raise BadAnswer("unknown_symptom", word)
            codes.add(code)
    return frozenset(codes)


def parse_region(text: str) -> str:
    value = unicodedata.normalize("NFKC", text).strip()
    if not _REGION.match(value):
        raise BadAnswer("bad_region", text)
    return value
