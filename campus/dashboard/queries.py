"""The dashboard's aggregate queries: a handful of GROUP BYs whatever the size of the campus.

Each takes the units to count (`None`: every unit) and returns rows per unit (or per gate),
never per person; the caller rolls units up the tree. Only active persons count: they are the
ones expected to report (the day roll-over counts the same people).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Integer, Select, and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AccessRecord, HealthReport, HealthWarning, Person, Place

S = TypeVar("S", bound=Select)
ACTIVE = "active"


def _in_units(stmt: S, units: Collection[int] | None) -> S:
    if units is None:
        return stmt
    return stmt.where(Person.unit_id.in_(sorted(units)))


@dataclass(frozen=True, slots=True)
class StatusRow:
    unit_id: int
    status: str
    persons: int
    returned: int
    reported: int  # reports of `today`


async def persons_by_status(
    session: AsyncSession, units: Collection[int] | None, today: date
) -> list[StatusRow]:
    """Active persons per unit and status: how many, back on campus, reported today.

    One pass over the persons, each joined to at most one report (the unique person/day key),
    rather than a scan of persons and another of the day's reports.
    """
    stmt = (
        select(
            Person.unit_id,
            Person.status,
            func.count(),
            func.count(Person.returned_at),
            func.count(HealthReport.id),
        )
        .select_from(Person)
        .outerjoin(
            HealthReport, and_(HealthReport.person_id == Person.id, HealthReport.day == today)
        )
        .where(Person.state == ACTIVE)
        .group_by(Person.unit_id, Person.status)
    )
    rows = await session.execute(_in_units(stmt, units))
    return [StatusRow(int(u), str(s), int(n), int(r), int(t)) for u, s, n, r, t in rows]


async def reports_by_day(
    session: AsyncSession, units: Collection[int] | None, first: date, last: date
) -> list[tuple[int, date, int]]:
    """(unit, campus day, reports) of active persons for the days first..last."""
    stmt = (
        select(Person.unit_id, HealthReport.day, func.count())
        .select_from(HealthReport)
        .join(Person, Person.id == HealthReport.person_id)
        .where(HealthReport.day >= first, HealthReport.day <= last, Person.state == ACTIVE)
        .group_by(Person.unit_id, HealthReport.day)
    )
    rows = await session.execute(_in_units(stmt, units))
    return [(int(u), d, int(n)) for u, d, n in rows]


async def warnings_by_unit(
    session: AsyncSession, units: Collection[int] | None, since: date
) -> list[tuple[int, int, int]]:
    """(unit, open warnings, warnings of `since` or later acknowledged) per unit."""
    acked = and_(HealthWarning.acked_at.is_not(None), HealthWarning.day >= since)
    stmt = (
        select(
            Person.unit_id,
            func.sum(case((HealthWarning.acked_at.is_(None), 1), else_=0)),
            func.sum(case((acked, 1), else_=0)),
        )
        .select_from(HealthWarning)
        .join(Person, Person.id == HealthWarning.person_id)
        .where(or_(HealthWarning.acked_at.is_(None), HealthWarning.day >= since))
        .group_by(Person.unit_id)
    )
    rows = await session.execute(_in_units(stmt, units))
    return [(int(u), int(o or 0), int(a or 0)) for u, o, a in rows]


@dataclass(frozen=True, slots=True)
class OpenWarning:
    warning_id: int
    person_id: int
    name: str  # the caller masks it before anyone sees it
    unit_id: int
    day: date
    cause: str
    status: str
    level: int
    created_at: datetime


async def open_warnings(
    session: AsyncSession, units: Collection[int] | None, limit: int
) -> list[OpenWarning]:
    """The newest unacknowledged warnings (at most `limit`)."""
    stmt = (
        select(
            HealthWarning.id,
            Person.id,
            Person.name,
            Person.unit_id,
            HealthWarning.day,
            HealthWarning.cause,
            HealthWarning.status,
            HealthWarning.level,
            HealthWarning.created_at,
        )
        .select_from(HealthWarning)
        .join(Person, Person.id == HealthWarning.person_id)
        .where(HealthWarning.acked_at.is_(None))
        .order_by(HealthWarning.created_at.desc(), HealthWarning.id.desc())
        .limit(limit)
    )
    rows = await session.execute(_in_units(stmt, units))
    return [
        OpenWarning(int(r[0]), int(r[1]), r[2], int(r[3]), r[4], r[5], r[6], int(r[7]), r[8])
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class GateRow:
    place_id: int
    code: str
    name: str
    hours: tuple[int, ...]  # entries let through, per hour of the campus day
    refused: int


def _hour_of(at: Any, start: datetime, dialect: str) -> Any:
    """The whole hours from `start` to `at`, in SQL (0 for the first hour of the day)."""
    if dialect == "sqlite":  # stored as UTC text; julianday() reads it
        return func.cast(
            (func.julianday(at) - func.julianday(start.astimezone(UTC).replace(tzinfo=None))) * 24,
            Integer,
        )
    return func.floor(func.extract("epoch", at - start) / 3600)


async def gate_entries(
    session: AsyncSession, units: Collection[int] | None, start: datetime, hours: int = 24
) -> list[GateRow]:
    """Entries per gate and hour from `start` (the campus midnight), and refusals.

    Grouped by gate and hour bucket in SQL (a few hundred rows whatever the traffic); the
    `at` index serves the day's range.
    """
    end = start + timedelta(hours=hours)
    hour = _hour_of(AccessRecord.at, start, session.get_bind().dialect.name).label("hour")
    entered = and_(AccessRecord.direction == "in", AccessRecord.allowed.is_(True))
    stmt = (
        select(
            AccessRecord.place_id,
            hour,
            func.sum(case((entered, 1), else_=0)),
            func.sum(case((AccessRecord.allowed.is_(False), 1), else_=0)),
        )
        .select_from(AccessRecord)
        .join(Place, Place.id == AccessRecord.place_id)
        .where(Place.kind == "gate", AccessRecord.at >= start, AccessRecord.at < end)
        .group_by(AccessRecord.place_id, hour)
    )
    if units is not None:
        # A semi-join: the scope's persons are read once, not looked up per access record.
        scoped = select(Person.id).where(Person.unit_id.in_(sorted(units)))
        stmt = stmt.where(AccessRecord.person_id.in_(scoped))
    counts: dict[int, list[int]] = {}
    refused: dict[int, int] = {}
    for place_id, h, n, r in await session.execute(stmt):
        per_hour = counts.setdefault(int(place_id), [0] * hours)
        if h is not None and 0 <= int(h) < hours:
            per_hour[int(h)] += int(n or 0)
        refused[int(place_id)] = refused.get(int(place_id), 0) + int(r or 0)
    return [
        GateRow(pid, code, name, tuple(counts.get(pid, [0] * hours)), refused.get(pid, 0))
        for pid, code, name in await gates(session)
    ]


async def gates(session: AsyncSession) -> Sequence[tuple[int, str, str]]:
    """Every gate, so a quiet gate shows as a row of zeros rather than not at all."""
    rows = await session.execute(
        select(Place.id, Place.code, Place.name).where(Place.kind == "gate").order_by(Place.code)
    )
    return [(int(r[0]), r[1], r[2]) for r in rows]
