"""Checks for single CSV values: each returns the normalised value or raises Invalid."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import TypeVar

from campus.identity import (
    InvalidIdNumber,
    mask_id_number,
    mask_phone,
    normalise_id_number,
    normalise_phone,
)
from campus.registry import formats
from campus.registry.report import ImportReport

T = TypeVar("T")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Invalid(ValueError):
    """A bad value; the message names it (masked when it is personal data)."""


def code(value: str) -> str:
    if not value:
        raise Invalid("is empty")
    if not formats.CODE.match(value):
        raise Invalid(f"{value[:80]!r} is not a code (1-64 letters, digits, '_', '.', '-')")
    return value


def optional_code(value: str) -> str | None:
    return code(value) if value else None


def person_no(value: str) -> str:
    if not value:
        raise Invalid("is empty")
    if not formats.PERSON_NO.match(value):
        raise Invalid(f"{value[:80]!r} is not a person number (1-64 letters, digits, '_', '-')")
    # Person numbers are matched case-insensitively everywhere (binding upper-cases too).
    return value.upper()


def optional_person_no(value: str) -> str | None:
    return person_no(value) if value else None


def person_nos(value: str) -> tuple[str, ...]:
    """A ';'-separated list: sorted and without repeats, so that comparisons are stable."""
    return tuple(sorted({person_no(part.strip()) for part in value.split(";") if part.strip()}))


def name(value: str) -> str:
    if not value:
        raise Invalid("is empty")
    if len(value) > formats.MAX_NAME:
        raise Invalid(f"is {len(value)} characters long, at most {formats.MAX_NAME}")
    if _CONTROL.search(value):
        raise Invalid("contains a line break or a control character")
    return value


def _choice(options: tuple[str, ...], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in options:
            raise Invalid(f"unknown {what} {value[:80]!r} (one of {', '.join(options)})")
        # The canonical string object, so 100,000 rows share a handful of strings.
        return options[options.index(value)]

    return check


category = _choice(formats.CATEGORIES, "category")
place_kind = _choice(formats.PLACE_KINDS, "kind")
_locale = _choice(formats.LOCALES, "locale")


def policy_in(names: Collection[str]) -> Callable[[str], str]:
    """A check for a policy name of the rules file; empty means the default policy."""
    named = _choice(tuple(sorted(names)), "policy")

    def check(value: str) -> str:
        return named(value) if value else formats.DEFAULT_POLICY

    return check


def locale(value: str) -> str | None:
    """None when empty: the caller decides between the default and the stored choice."""
    return _locale(value) if value else None


def roles(value: str) -> str:
    """A ';'-separated subset of the roles, stored in one canonical order."""
    given = {part.strip() for part in value.split(";") if part.strip()}
    unknown = sorted(given - set(formats.ROLES))
    if unknown:
        raise Invalid(
            f"unknown role {', '.join(repr(r[:40]) for r in unknown)} "
            f"(any of {', '.join(formats.ROLES)})"
        )
    return canonical_roles(given)


def canonical_roles(given: set[str] | frozenset[str] | str) -> str:
    if isinstance(given, str):
        given = {r for r in given.split(";") if r}
    return ";".join(r for r in formats.ROLES if r in given)


def id_number(value: str) -> str:
    try:
        return normalise_id_number(value)
    except InvalidIdNumber as exc:
        shown = value.strip().replace(" ", "").upper()
        raise Invalid(f"{exc} ({mask_id_number(shown)!r})" if shown else str(exc)) from None


def phone(value: str) -> str | None:
    if not value:
        return None
    try:
        return normalise_phone(value)
    except ValueError:
        raise Invalid(f"{mask_phone(value)!r} is not an 11-digit mainland mobile number") from None


class RowCheck:
    """Runs checks over one row, reporting each bad column; `ok` says whether all passed."""

    def __init__(self, report: ImportReport, line: int, row: dict[str, str]) -> None:
        self.report = report
        self.line = line
        self.row = row
        self.ok = True

    def __call__(self, column: str, check: Callable[[str], T]) -> T | None:
        try:
            return check(self.row.get(column, "").strip())
        except Invalid as exc:
            self.bad(column, str(exc))
            return None

    def bad(self, column: str, reason: str) -> None:
        self.report.add(self.line, column, reason)
        self.ok = False
