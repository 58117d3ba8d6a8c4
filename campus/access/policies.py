"""Access policies: the `policies:` section of the rules file, and the decision for one person.

A policy names what a place admits: health statuses, person categories, residents only
(home place inside the place), returned only (back on campus, `Person.returned_at`), time
windows in the campus time zone, and a capacity. Exits are always allowed; a policy decides
entries. Errors name the policy and the field: `policies.library.windows[0].from: …`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from campus.registry.formats import CATEGORIES
from campus.rules import RulesError

STATUSES = ("green", "yellow", "red")
REQUIRED = ("open", "green_only", "residents_only", "staff_only", "returned_only")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_FIELDS = frozenset(
    {
        "description",
        "statuses",
        "categories",
        "residents_only",
        "returned_only",
        "windows",
        "capacity",
    }
)
_WINDOW_FIELDS = frozenset({"days", "from", "to"})


class PolicyError(RulesError):
    """A policy in the rules file is invalid; the message names the policy and the field."""


class Reason(Enum):
    """Why an entry was refused (stored in access_records.reason)."""

    INVALID_CODE = "invalid_code"  # forged, tampered, truncated, unknown or retired key
    EXPIRED_CODE = "expired_code"
    UNKNOWN_PERSON = "unknown_person"  # a genuine code for a person no longer on record
    INACTIVE = "inactive"  # pending, expired or left
    STATUS = "status"
    CATEGORY = "category"
    NOT_RESIDENT = "not_resident"
    NOT_RETURNED = "not_returned"
    CLOSED = "closed"  # outside the time windows
    FULL = "full"
    NO_POLICY = "no_policy"  # the place names a policy the rules file lacks


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]  # 0 = Monday, as date.weekday()
    start: time
    end: time  # exclusive

    def contains(self, local: datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def describe(self) -> str:
        days = "" if len(self.days) == 7 else ",".join(DAYS[d] for d in sorted(self.days)) + " "
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{days}{self.start:%H:%M}–{end}"


@dataclass(frozen=True, slots=True)
class Subject:
    """The live facts about a person that a decision needs."""

    person_id: int
    status: str
    category: str
    state: str
    valid_until: date | None
    home_place_id: int | None
    returned_at: datetime | None


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    statuses: frozenset[str] = frozenset({"green"})
    categories: frozenset[str] | None = None  # None: every category
    residents_only: bool = False
    returned_only: bool = False
    windows: tuple[Window, ...] = ()  # empty: always open
    capacity: int | None = None
    description: str = ""

    def decide(
        self,
        subject: Subject,
        place_id: int,
        local_now: datetime,
        within: Callable[[int, int], bool],
    ) -> Reason | None:
        """None to admit, else the first reason to refuse (capacity is the caller's: it
        needs the occupancy, counted in the same transaction as the record)."""
        if subject.state != "active" or (
            subject.valid_until is not None and subject.valid_until < local_now.date()
        ):
            return Reason.INACTIVE
        if subject.status not in self.statuses:
            return Reason.STATUS
        if self.categories is not None and subject.category not in self.categories:
            return Reason.CATEGORY
        if self.residents_only and (
            subject.home_place_id is None or not within(subject.home_place_id, place_id)
        ):
            return Reason.NOT_RESIDENT
        if self.returned_only and (subject.returned_at is None or subject.returned_at > local_now):
            return Reason.NOT_RETURNED
        if self.windows and not any(w.contains(local_now) for w in self.windows):
            return Reason.CLOSED
        return None

    def hours(self) -> str:
        return "; ".join(w.describe() for w in self.windows)


@dataclass(frozen=True, slots=True)
class Policies:
    by_name: Mapping[str, Policy] = field(default_factory=dict)

    def get(self, name: str) -> Policy | None:
        return self.by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name


# What a rules file without a `policies:` section gets: the shipped file's five.
DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "open": {"statuses": list(STATUSES)},
    "green_only": {"statuses": ["green"]},
    "residents_only": {"statuses": ["green"], "residents_only": True},
    "staff_only": {"statuses": ["green"], "categories": ["faculty", "staff"]},
    "returned_only": {"statuses": ["green"], "returned_only": True},
}


def parse_policies(raw: object, source: str = "<rules>") -> Policies:
    """Validate the `policies:` section (None: the defaults); raise PolicyError."""
    if raw is None:
        raw = DEFAULTS
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{source}: policies must be a mapping of policy name to policy")
    policies: dict[str, Policy] = {}
    for name, body in raw.items():
        where = f"{source}: policies.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise PolicyError(f"{where}: a policy name is lower_snake_case")
        policies[name] = _policy(name, body, where)
    missing = [n for n in REQUIRED if n not in policies]
    if missing:
        raise PolicyError(
            f"{source}: policies: missing {', '.join(missing)} (places may name any of "
            f"{', '.join(REQUIRED)})"
        )
    return Policies(policies)


def _policy(name: str, body: object, where: str) -> Policy:
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise PolicyError(f"{where}: must be a mapping of fields")
    unknown = sorted(str(k) for k in set(body) - _FIELDS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})"
        )
    description = body.get("description", "")
    if not isinstance(description, str):
        raise PolicyError(f"{where}.description: must be text")
    statuses = _names(body.get("statuses", ["green"]), STATUSES, f"{where}.statuses", "status")
    if not statuses:
        raise PolicyError(f"{where}.statuses: admits no status at all")
    categories = None
    if body.get("categories") is not None:
        categories = _names(body["categories"], CATEGORIES, f"{where}.categories", "category")
        if not categories:
            raise PolicyError(f"{where}.categories: admits no category at all")
    capacity = body.get("capacity")
    if capacity is not None and (
        isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
    ):
        raise PolicyError(f"{where}.capacity: {capacity!r} is not a whole number ≥ 1")
    return Policy(
        name=name,
        statuses=statuses,
        categories=categories,
        residents_only=_flag(body.get("residents_only", False), f"{where}.residents_only"),
        returned_only=_flag(body.get("returned_only", False), f"{where}.returned_only"),
        windows=_windows(body.get("windows"), f"{where}.windows"),
        capacity=capacity,
        description=description,
    )


def _names(raw: object, allowed: tuple[str, ...], where: str, what: str) -> frozenset[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise PolicyError(f"{where}: must be a list of {what} names")
    for item in raw:
        if item not in allowed:
            raise PolicyError(f"{where}: unknown {what} {item!r} (known: {', '.join(allowed)})")
    return frozenset(raw)


def _flag(raw: object, where: str) -> bool:
    if not isinstance(raw, bool):
        raise PolicyError(f"{where}: {raw!r} is not true or false")
    return raw


def _windows(raw: object, where: str) -> tuple[Window, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{where}: must be a non-empty list of {{days, from, to}}")
    windows = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise PolicyError(f"{at}: must be a mapping with days, from and to")
        unknown = sorted(str(k) for k in set(item) - _WINDOW_FIELDS)
        if unknown:
            raise PolicyError(f"{at}: unknown field {unknown[0]!r} (known: days, from, to)")
        days_raw = item.get("days", list(DAYS))
        days = _names(days_raw, DAYS, f"{at}.days", "day")
        if not days:
            raise PolicyError(f"{at}.days: names no day")
        start = _time(item.get("from"), f"{at}.from")
        end = _time(item.get("to"), f"{at}.to")
        if end <= start:
            raise PolicyError(
                f"{at}: to {end:%H:%M} is not after from {start:%H:%M} "
                "(split a window over midnight in two)"
            )
        windows.append(Window(frozenset(DAYS.index(d) for d in days), start, end))
    return tuple(windows)


def _time(raw: object, where: str) -> time:
    if raw == "24:00":
        return time.max
    if isinstance(raw, int) and not isinstance(raw, bool):
        # YAML 1.1 reads an unquoted 07:30 as the sexagesimal number 450.
        raise PolicyError(f'{where}: {raw!r}: quote the time, e.g. "07:30"')
    match = _HHMM.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise PolicyError(f"{where}: {raw!r} is not a time HH:MM (00:00–24:00)")
    return time(int(match[1]), int(match[2]))
