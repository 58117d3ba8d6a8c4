"""The rules file's `meals:` section: ordering deadlines per slot, the per-person limit, and
who gets meals delivered. Checked at start-up; every error names the bad entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from campus.registry.formats import CATEGORIES
from campus.rules import RulesError, _hhmm

SLOTS = ("breakfast", "lunch", "dinner")
STATUSES = ("green", "yellow", "red")
_KEYS = frozenset({"deadlines", "per_person_limit", "days_ahead", "delivery", "always"})
_DELIVERY_KEYS = frozenset({"days_after_return", "statuses"})
_DEADLINE_KEYS = frozenset({"at", "days_before"})


@dataclass(frozen=True, slots=True)
class Deadline:
    """Orders for a slot close at `at` (campus time), `days_before` the meal's day."""

    at: time
    days_before: int = 0

    def on(self, day: date, tz: ZoneInfo) -> datetime:
        return datetime.combine(day - timedelta(days=self.days_before), self.at, tz)


DEFAULT_DEADLINES = {
    "breakfast": Deadline(time(20, 0), 1),
    "lunch": Deadline(time(9, 30)),
    "dinner": Deadline(time(15, 0)),
}


@dataclass(frozen=True, slots=True)
class MealRules:
    deadlines: Mapping[str, Deadline] = field(default_factory=lambda: dict(DEFAULT_DEADLINES))
    per_person_limit: int = 2  # portions per person per slot of a day
    days_ahead: int = 3  # menus of today and the next days_ahead - 1 days are offered
    # Delivered to the home building: the first days after arrival, or these statuses (and
    # red, always: campus/meals/eligibility.py).
    delivery_days_after_return: int = 14
    delivery_statuses: frozenset[str] = frozenset({"yellow", "red"})
    # Categories that may order without being back on campus (they never left).
    always: frozenset[str] = frozenset({"faculty", "staff"})

    def deadline(self, day: date, slot: str, tz: ZoneInfo) -> datetime:
        return self.deadlines[slot].on(day, tz)

    def is_open(self, day: date, slot: str, now: datetime, tz: ZoneInfo) -> bool:
        return now < self.deadline(day, slot, tz)


def parse_meal_rules(raw: object, source: str = "<rules>") -> MealRules:
    """The `meals:` section (absent: the defaults); raises RulesError naming the entry."""
    if raw is None:
        return MealRules()
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: meals must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise RulesError(f"{source}: meals has unknown keys {sorted(map(str, unknown))}")
    deadlines = dict(DEFAULT_DEADLINES)
    given = raw.get("deadlines") or {}
    if not isinstance(given, dict):
        raise RulesError(f"{source}: meals.deadlines must be a mapping of slot to deadline")
    for slot, entry in given.items():
        deadlines[_slot(slot, source)] = _deadline(entry, f"meals.deadlines.{slot}", source)
    delivery = raw.get("delivery") or {}
    if not isinstance(delivery, dict):
        raise RulesError(f"{source}: meals.delivery must be a mapping")
    unknown = set(delivery) - _DELIVERY_KEYS
    if unknown:
        raise RulesError(f"{source}: meals.delivery has unknown keys {sorted(map(str, unknown))}")
    return MealRules(
        deadlines=deadlines,
        per_person_limit=_count(raw, "per_person_limit", 2, 1, 100, source),
        days_ahead=_count(raw, "days_ahead", 3, 1, 31, source),
        delivery_days_after_return=_count(delivery, "days_after_return", 14, 0, 365, source),
        delivery_statuses=_names(
            delivery.get("statuses", ["yellow", "red"]),
            STATUSES,
            "meals.delivery.statuses",
            source,
        ),
        always=_names(raw.get("always", ["faculty", "staff"]), CATEGORIES, "meals.always", source),
    )


def _slot(value: object, source: str) -> str:
    if value not in SLOTS:
        raise RulesError(f"{source}: meals.deadlines.{value}: a slot is one of {', '.join(SLOTS)}")
    return str(value)


def _deadline(entry: object, where: str, source: str) -> Deadline:
    if isinstance(entry, str | int) and not isinstance(entry, bool):
        return Deadline(_hhmm(entry, where, source))
    if not isinstance(entry, dict):
        raise RulesError(f'{source}: {where} must be "HH:MM" or {{at: "HH:MM", days_before: N}}')
    unknown = set(entry) - _DEADLINE_KEYS
    if unknown:
        raise RulesError(f"{source}: {where} has unknown keys {sorted(map(str, unknown))}")
    days = entry.get("days_before", 0)
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days <= 7:
        raise RulesError(f"{source}: {where}.days_before {days!r} is not a whole number 0–7")
    return Deadline(_hhmm(entry.get("at"), f"{where}.at", source), days)


def _count(raw: Mapping[str, Any], key: str, default: int, low: int, high: int, source: str) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RulesError(f"{source}: meals {key} {value!r} is not a whole number {low}–{high}")
    return value


def _names(value: object, allowed: tuple[str, ...], where: str, source: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(f"{source}: {where} must be a list of names")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise RulesError(f"{source}: {where}: unknown {bad}; allowed {', '.join(allowed)}")
    return frozenset(value)
