"""Declarative conditions over a day's report and its history, parsed from YAML (no `eval`).

    {field: temperature, op: ">=", value: 37.3}
    {field: symptoms, op: any_of, value: [fever, cough]}
    {history: missed_days, op: ">=", value: 2}
    {history: reports, within_days: 14, where: {field: travel, op: "==", value: true}}
    {all: [...]}, {any: [...]}, {not: {...}}

A field condition is false on a day without a report, whatever its operator.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from campus.health.model import LOCATIONS, SYMPTOMS, Report

T = TypeVar("T")


class ConditionError(ValueError):
    """A condition that cannot be used; `path` says where in the condition (when.all[1].op)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, slots=True)
class Facts:
    """What a rule may look at for one person on one campus day.

    `history` holds the reports of the look-back window up to and including `day` (oldest
    first, none from before the last override); `missed_days` counts the consecutive days
    without a report ending at `day`.
    """

    day: date
    report: Report | None
    history: tuple[Report, ...] = ()
    missed_days: int = 0


@dataclass(frozen=True, slots=True)
class FieldIs:
    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class MissedDays:
    op: str
    value: int


@dataclass(frozen=True, slots=True)
class ReportsWithin:
    """Reports within the last `days` days (today included) that satisfy `where`, counted."""

    days: int
    where: Condition
    op: str = ">="
    value: int = 1


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Condition, ...]


@dataclass(frozen=True, slots=True)
class Not:
    part: Condition


Condition = FieldIs | MissedDays | ReportsWithin | AllOf | AnyOf | Not

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_NUMBER_OPS = tuple(_COMPARE)
_EQUALITY_OPS = ("==", "!=")
_SET_OPS = ("any_of", "all_of", "none_of", "empty", "not_empty")
_CHOICE_OPS = ("==", "!=", "in", "not_in")
_TEXT_OPS = ("==", "!=", "in", "not_in", "empty", "not_empty")

# field name -> (kind, operators)
FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "temperature": ("number", _NUMBER_OPS),
    "symptoms": ("symptoms", _SET_OPS),
    "location": ("location", _CHOICE_OPS),
    "region": ("text", _TEXT_OPS),
    "contact": ("bool", _EQUALITY_OPS),
    "travel": ("bool", _EQUALITY_OPS),
}
HISTORY = ("missed_days", "reports")


# --- evaluation -------------------------------------------------------------------------


def holds(cond: Condition, facts: Facts) -> bool:
    match cond:
        case FieldIs():
            return facts.report is not None and _field_holds(cond, facts.report)
        case MissedDays(op=op, value=value):
            return _COMPARE[op](facts.missed_days, value)
        case ReportsWithin():
            return _COMPARE[cond.op](len(matching_reports(cond, facts)), cond.value)
        case AllOf(parts=parts):
            return all(holds(p, facts) for p in parts)
        case AnyOf(parts=parts):
            return any(holds(p, facts) for p in parts)
        case Not(part=part):
            return not holds(part, facts)
    raise TypeError(f"not a condition: {cond!r}")  # pragma: no cover


def matching_reports(cond: ReportsWithin, facts: Facts) -> list[Report]:
    first = facts.day - timedelta(days=cond.days - 1)
    return [
        r
        for r in facts.history
        if first <= r.day <= facts.day and holds(cond.where, Facts(r.day, r, (r,), 0))
    ]


def _field_holds(cond: FieldIs, report: Report) -> bool:
    actual = getattr(report, cond.field)
    op, value = cond.op, cond.value
    if op in _COMPARE:
        return _COMPARE[op](actual, value)
    if op == "in":
        return actual in value
    if op == "not_in":
        return actual not in value
    if op == "any_of":
        return bool(actual & value)
    if op == "all_of":
        return bool(value) and value <= actual
    if op == "none_of":
        return not actual & value
    if op == "empty":
        return not actual
    if op == "not_empty":
        return bool(actual)
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover (refused when parsed)


def uses_history(cond: Condition) -> bool:
    """Whether the condition looks beyond the day's own report."""
    match cond:
        case FieldIs():
            return False
        case MissedDays() | ReportsWithin():
            return True
        case AllOf(parts=parts) | AnyOf(parts=parts):
            return any(uses_history(p) for p in parts)
        case Not(part=part):
            return uses_history(part)
    return False  # pragma: no cover


def find_all(cond: Condition, kind: type[T]) -> list[T]:
    """Every sub-condition of a kind (e.g. the ReportsWithin of a rule)."""
    found: list[T] = [cond] if isinstance(cond, kind) else []
    match cond:
        case AllOf(parts=parts) | AnyOf(parts=parts):
            for part in parts:
                found += find_all(part, kind)
        case Not(part=part):
            found += find_all(part, kind)
    return found


def lookback(cond: Condition) -> int:
    """How many days of history the condition reads (today included)."""
    match cond:
        case ReportsWithin(days=days):
            return days
        case AllOf(parts=parts) | AnyOf(parts=parts):
            return max((lookback(p) for p in parts), default=0)
        case Not(part=part):
            return lookback(part)
    return 1


# --- parsing ----------------------------------------------------------------------------


def parse(raw: object, path: str = "when") -> Condition:
    """A condition from its YAML form; ConditionError names the path and the bad value."""
    if not isinstance(raw, Mapping):
        raise ConditionError(path, f"expected a mapping, got {_show(raw)}")
    keys = set(raw)
    for combinator, build in (("all", AllOf), ("any", AnyOf)):
        if combinator in keys:
            _only(raw, {combinator}, path)
            items = raw[combinator]
            if not isinstance(items, list) or not items:
                raise ConditionError(f"{path}.{combinator}", "expected a non-empty list")
            return build(
                tuple(parse(item, f"{path}.{combinator}[{i}]") for i, item in enumerate(items))
            )
    if "not" in keys:
        _only(raw, {"not"}, path)
        return Not(parse(raw["not"], f"{path}.not"))
    if "field" in keys:
        return _parse_field(raw, path)
    if "history" in keys:
        return _parse_history(raw, path)
    raise ConditionError(
        path, f"expected one of field, history, all, any, not; got keys {sorted(map(str, keys))}"
    )


def _parse_field(raw: Mapping[Any, Any], path: str) -> FieldIs:
    _only(raw, {"field", "op", "value"}, path)
    name = raw["field"]
    if name not in FIELDS:
        raise ConditionError(
            f"{path}.field", f"unknown field {_show(name)}; use one of {_list(FIELDS)}"
        )
    kind, ops = FIELDS[name]
    op = raw.get("op")
    if op not in ops:
        raise ConditionError(
            f"{path}.op", f"operator {_show(op)} does not apply to {name}; use one of {_list(ops)}"
        )
    if op in ("empty", "not_empty"):
        if "value" in raw:
            raise ConditionError(f"{path}.value", f"operator {op} takes no value")
        return FieldIs(name, op, None)
    if "value" not in raw:
        raise ConditionError(f"{path}.value", "missing")
    return FieldIs(name, op, _parse_value(kind, op, raw["value"], f"{path}.value"))


def _parse_value(kind: str, op: str, value: object, path: str) -> Any:
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConditionError(path, f"expected a temperature in °C, got {_show(value)}")
        if not 30 <= value <= 45:
            raise ConditionError(path, f"temperature {value} is not between 30 and 45 °C")
        return round(value * 10)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConditionError(path, f"expected true or false, got {_show(value)}")
        return value
    if kind == "symptoms":
        items = _string_list(value, path)
        unknown = [s for s in items if s not in SYMPTOMS]
        if unknown:
            raise ConditionError(path, f"unknown symptom {unknown[0]!r}; use {_list(SYMPTOMS)}")
        return frozenset(items)
    allowed = LOCATIONS if kind == "location" else None
    if op in ("in", "not_in"):
        items = _string_list(value, path)
        for item in items:
            _check_choice(item, allowed, path)
        return frozenset(items)
    if not isinstance(value, str):
        raise ConditionError(path, f"expected text, got {_show(value)}")
    _check_choice(value, allowed, path)
    return value


def _check_choice(value: str, allowed: tuple[str, ...] | None, path: str) -> None:
    if allowed is not None and value not in allowed:
        raise ConditionError(path, f"unknown value {value!r}; use one of {_list(allowed)}")


def _parse_history(raw: Mapping[Any, Any], path: str) -> MissedDays | ReportsWithin:
    kind = raw["history"]
    if kind == "missed_days":
        _only(raw, {"history", "op", "value"}, path)
        op, value = _comparison(raw, path, default=None)
        return MissedDays(op, value)
    if kind == "reports":
        _only(raw, {"history", "within_days", "where", "op", "value"}, path)
        days = raw.get("within_days")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 60:
            raise ConditionError(
                f"{path}.within_days", f"expected a number of days 1–60, got {_show(days)}"
            )
        if "where" not in raw:
            raise ConditionError(f"{path}.where", "missing (which reports count?)")
        where = parse(raw["where"], f"{path}.where")
        if uses_history(where):
            raise ConditionError(f"{path}.where", "may only test report fields, not history")
        op, value = _comparison(raw, path, default=(">=", 1))
        return ReportsWithin(days, where, op, value)
    raise ConditionError(
        f"{path}.history", f"unknown history {_show(kind)}; use one of {_list(HISTORY)}"
    )


def _comparison(
    raw: Mapping[Any, Any], path: str, default: tuple[str, int] | None
) -> tuple[str, int]:
    if default is not None and "op" not in raw and "value" not in raw:
        return default
    op = raw.get("op")
    if op not in _COMPARE:
        raise ConditionError(
            f"{path}.op", f"unknown operator {_show(op)}; use one of {_list(_COMPARE)}"
        )
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConditionError(f"{path}.value", f"expected a whole number ≥ 0, got {_show(value)}")
    return op, value


def _only(raw: Mapping[Any, Any], allowed: set[str], path: str) -> None:
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        raise ConditionError(
            f"{path}.{extra[0]}", f"unknown key; allowed here: {_list(sorted(allowed))}"
        )


def _string_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConditionError(path, f"expected a list of names, got {_show(value)}")
    return list(value)


def _list(items: Any) -> str:
    return ", ".join(str(i) for i in items)


def _show(value: object) -> str:
    return "nothing" if value is None else repr(value)
