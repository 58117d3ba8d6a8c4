"""The rules file's `tracing:` section: windows, margins, dwell times, retention."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from campus.registry.formats import PLACE_KINDS
from campus.rules import RulesError

# The rules file may leave any of these out.
DEFAULT_DWELL_MINUTES: Mapping[str, int] = {
    "campus": 5,
    "gate": 5,
    "dorm": 480,
    "house": 480,
    "grid": 30,
    "canteen": 45,
    "library": 180,
    "teaching": 120,
    "office": 240,
    "lab": 240,
    "site": 480,
    "other": 60,
}
DEFAULT_BUILDING_KINDS = (
    "dorm",
    "house",
    "canteen",
    "library",
    "teaching",
    "office",
    "lab",
    "site",
)
_KEYS = frozenset(
    {
        "retention_days",
        "days",
        "margin_minutes",
        "max_stay_hours",
        "subtree",
        "building_kinds",
        "dwell_minutes",
        "link_minutes",
    }
)


@dataclass(frozen=True, slots=True)
class TracingRules:
    retention_days: int = 28
    days: int = 14
    margin_minutes: int = 15
    # An exit later than this after the entry does not close the visit (a forgotten exit
    # scanned days later); the visit closes after the place kind's dwell instead.
    max_stay_hours: int = 16
    subtree: bool = False
    building_kinds: tuple[str, ...] = DEFAULT_BUILDING_KINDS
    dwell_minutes: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_DWELL_MINUTES))
    link_minutes: int = 15

    @property
    def max_stay(self) -> timedelta:
        return timedelta(hours=self.max_stay_hours)

    def dwell(self, kind: str) -> timedelta:
        return timedelta(minutes=self.dwell_minutes.get(kind, self.dwell_minutes["other"]))


def _int(raw: Mapping[str, Any], key: str, default: int, low: int, high: int, source: str) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RulesError(f"{source}: tracing.{key} {value!r} is not a whole number {low}–{high}")
    return value


def tracing_rules(sections: Mapping[str, Any], source: str = "rules file") -> TracingRules:
    """The `tracing:` section, validated; a missing section gives the defaults."""
    raw = sections.get("tracing")
    if raw is None:
        return TracingRules()
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: tracing must be a mapping")
    unknown = set(raw) - _KEYS
    if unknown:
        raise RulesError(f"{source}: tracing has unknown keys {sorted(map(str, unknown))}")
    retention = _int(raw, "retention_days", 28, 1, 3650, source)
    days = _int(raw, "days", 14, 1, 3650, source)
    if days > retention:
        raise RulesError(
            f"{source}: tracing.days {days} is longer than tracing.retention_days {retention}"
        )
    subtree = raw.get("subtree", False)
    if not isinstance(subtree, bool):
        raise RulesError(f"{source}: tracing.subtree {subtree!r} is not true or false")
    kinds = raw.get("building_kinds", list(DEFAULT_BUILDING_KINDS))
    if not isinstance(kinds, list) or any(k not in PLACE_KINDS for k in kinds):
        raise RulesError(
            f"{source}: tracing.building_kinds {kinds!r} must list place kinds "
            f"({', '.join(PLACE_KINDS)})"
        )
    dwell = dict(DEFAULT_DWELL_MINUTES)
    given = raw.get("dwell_minutes", {})
    if not isinstance(given, dict):
        raise RulesError(f"{source}: tracing.dwell_minutes must map place kinds to minutes")
    for kind, minutes in given.items():
        if kind not in PLACE_KINDS:
            raise RulesError(f"{source}: tracing.dwell_minutes has unknown place kind {kind!r}")
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise RulesError(
                f"{source}: tracing.dwell_minutes.{kind} {minutes!r} is not a whole number 1–1440"
            )
        dwell[kind] = minutes
    return TracingRules(
        retention_days=retention,
        days=days,
        margin_minutes=_int(raw, "margin_minutes", 15, 0, 1440, source),
        max_stay_hours=_int(raw, "max_stay_hours", 16, 1, 72, source),
        subtree=subtree,
        building_kinds=tuple(kinds),
        dwell_minutes=dwell,
        link_minutes=_int(raw, "link_minutes", 15, 1, 1440, source),
    )
