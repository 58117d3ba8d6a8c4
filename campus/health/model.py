"""The values the engine works on: statuses, one day's report, and the reasons for a status."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Status.GREEN: 0, Status.YELLOW: 1, Status.RED: 2}


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.GREEN)


# The symptoms a report may name (the check-in's multi-select), and where the person is.
SYMPTOMS = ("fever", "cough", "sore_throat", "fatigue", "taste_smell", "diarrhoea", "other")
LOCATIONS = ("campus", "city", "elsewhere")

# Temperatures outside this range (°C, inclusive) are refused as typing mistakes.
TEMPERATURE_MIN_TENTHS = 340
TEMPERATURE_MAX_TENTHS = 430
NORMAL_TEMPERATURE_TENTHS = 365


@dataclass(frozen=True, slots=True)
class Report:
    """One person's report for one campus day. Temperatures are kept in tenths of a degree."""

    day: date
    temperature: int  # tenths of °C: 365 is 36.5 °C
    symptoms: frozenset[str] = frozenset()
    location: str = "campus"
    region: str = ""
    contact: bool = False
    travel: bool = False
    submitted_at: datetime | None = None

    @classmethod
    def normal(cls, day: date) -> Report:
        """A report with nothing to note: a normal day, as the recovery forecast plays it."""
        return cls(day=day, temperature=NORMAL_TEMPERATURE_TENTHS)

    def same_as(self, day: date, submitted_at: datetime | None = None) -> Report:
        """This report again, for another day ("same as yesterday")."""
        return Report(
            day=day,
            temperature=self.temperature,
            symptoms=self.symptoms,
            location=self.location,
            region=self.region,
            contact=self.contact,
            travel=self.travel,
            submitted_at=submitted_at,
        )


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a status is what it is: the rule that fired and the facts it fired on.

    `day` is the day of the evidence: the report's day for a report rule, the matching report's
    day for a history rule, the first missed day for missed reports. A warning is raised once
    per (person, rule, evidence day), so the same evidence never warns twice.
    """

    rule: str
    code: str
    day: date
    temperature: int | None = None
    symptoms: tuple[str, ...] = ()
    region: str = ""
    days: int = 0
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"rule": self.rule, "code": self.code, "day": self.day.isoformat()}
        if self.temperature is not None:
            data["temperature"] = self.temperature
        if self.symptoms:
            data["symptoms"] = list(self.symptoms)
        if self.region:
            data["region"] = self.region
        if self.days:
            data["days"] = self.days
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Reason:
        return cls(
            rule=str(data["rule"]),
            code=str(data.get("code", data["rule"])),
            day=date.fromisoformat(str(data["day"])),
            temperature=int(data["temperature"]) if "temperature" in data else None,
            symptoms=tuple(str(s) for s in data.get("symptoms", ())),
            region=str(data.get("region", "")),
            days=int(data.get("days", 0)),
            note=str(data.get("note", "")),
        )


def reasons_to_text(reasons: tuple[Reason, ...] | list[Reason]) -> str:
    return json.dumps([r.to_json() for r in reasons], ensure_ascii=False, separators=(",", ":"))


def reasons_from_text(text: str | None) -> tuple[Reason, ...]:
    if not text:
        return ()
    try:
        data = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(data, list):
        return ()
    return tuple(Reason.from_json(item) for item in data if isinstance(item, dict))


@dataclass(frozen=True, slots=True)
class Standing:
    """A person's status at one moment, with its reasons."""

    status: Status = Status.GREEN
    since: datetime | None = None
    reasons: tuple[Reason, ...] = ()
