"""Reading and writing the health tables; every function takes the caller's AsyncSession."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    false,
    insert,
    literal,
    not_,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus.health.conditions import AllOf, AnyOf, Condition, FieldIs, Not
from campus.health.model import (
    Reason,
    Report,
    Standing,
    Status,
    reasons_from_text,
    reasons_to_text,
)
from storage.models import (
    HealthReport,
    HealthReportRevision,
    HealthState,
    Person,
    StatusChange,
)


@dataclass(frozen=True, slots=True)
class PersonHealth:
    """A person as the engine sees them: identity, live status and the engine's state."""

    person_id: int
    person_no: str
    name: str
    locale: str
    unit_id: int
    responsible_id: int | None
    active: bool
    status: Status
    since: datetime | None
    has_state: bool = False
    reasons: tuple[Reason, ...] = ()
    missed_days: int = 0
    floor_at: datetime | None = None

    @property
    def standing(self) -> Standing:
        return Standing(self.status, self.since, self.reasons)


PERSON_COLUMNS = (
    Person.id,
    Person.person_no,
    Person.name,
    Person.locale,
    Person.unit_id,
    Person.responsible_id,
    Person.state,
    Person.status,
    Person.status_since,
    HealthState.person_id.label("state_person_id"),
    HealthState.reasons,
    HealthState.missed_days,
    HealthState.floor_at,
)


def person_select() -> Any:
    return select(*PERSON_COLUMNS).outerjoin(HealthState, HealthState.person_id == Person.id)


def person_from_row(row: Any) -> PersonHealth:
    has_state = row.state_person_id is not None
    return PersonHealth(
        person_id=row.id,
        person_no=row.person_no,
        name=row.name,
        locale=row.locale,
        unit_id=row.unit_id,
        responsible_id=row.responsible_id,
        active=row.state == "active",
        status=Status(row.status or "green"),
        since=row.status_since,
        has_state=has_state,
        reasons=reasons_from_text(row.reasons) if has_state else (),
        missed_days=(row.missed_days or 0) if has_state else 0,
        floor_at=row.floor_at if has_state else None,
    )


async def load_person(session: AsyncSession, person_id: int) -> PersonHealth | None:
    row = (await session.execute(person_select().where(Person.id == person_id))).first()
    return None if row is None else person_from_row(row)


async def find_person(session: AsyncSession, person_no: str) -> PersonHealth | None:
    stmt = person_select().where(Person.person_no == person_no.strip().upper())
    row = (await session.execute(stmt)).first()
    return None if row is None else person_from_row(row)


# --- reports ----------------------------------------------------------------------------

REPORT_FIELDS = (
    "person_id",
    "day",
    "temperature",
    "symptoms",
    "location",
    "region",
    "contact",
    "travel",
    "source",
    "revision",
    "submitted_at",
)


@dataclass(frozen=True, slots=True)
class StoredReport:
    id: int
    revision: int
    source: str
    report: Report


_NO_SYMPTOMS: frozenset[str] = frozenset()


def report_from_row(row: Any) -> Report:
    return Report(
        day=row.day,
        temperature=row.temperature,
        symptoms=frozenset(row.symptoms.split(";")) if row.symptoms else _NO_SYMPTOMS,
        location=row.location,
        region=row.region,
        contact=bool(row.contact),
        travel=bool(row.travel),
        submitted_at=row.submitted_at,
    )


def report_values(report: Report) -> dict[str, Any]:
    return {
        "day": report.day,
        "temperature": report.temperature,
        "symptoms": ";".join(sorted(report.symptoms)),
        "location": report.location,
        "region": report.region,
        "contact": report.contact,
        "travel": report.travel,
        "submitted_at": report.submitted_at,
    }


_REPORT_COLUMNS = (
    HealthReport.id.label("report_id"),
    HealthReport.day,
    HealthReport.temperature,
    HealthReport.symptoms,
    HealthReport.location,
    HealthReport.region,
    HealthReport.contact,
    HealthReport.travel,
    HealthReport.source,
    HealthReport.revision,
    HealthReport.submitted_at,
)


def _stored(row: Any) -> StoredReport:
    return StoredReport(row.report_id, row.revision, row.source, report_from_row(row))


async def reports_between(
    session: AsyncSession, person_id: int, first: date, last: date
) -> list[StoredReport]:
    stmt = (
        select(*_REPORT_COLUMNS)
        .where(HealthReport.person_id == person_id, HealthReport.day.between(first, last))
        .order_by(HealthReport.day)
    )
    return [_stored(row) for row in await session.execute(stmt)]


# The check-in's statements are built once, with bound parameters: building a statement
# costs more than SQLite takes to run it.
_LOAD_FOR_CHECKIN = (
    select(*PERSON_COLUMNS, *_REPORT_COLUMNS)
    .outerjoin(HealthState, HealthState.person_id == Person.id)
    .outerjoin(
        HealthReport,
        and_(
            HealthReport.person_id == Person.id,
            HealthReport.day.between(bindparam("first"), bindparam("last")),
        ),
    )
    .where(Person.id == bindparam("person_id"))
    .order_by(HealthReport.day)
)
_INSERT_REPORT = insert(HealthReport).returning(HealthReport.id)


async def load_for_checkin(
    session: AsyncSession, person_id: int, first: date, last: date
) -> tuple[PersonHealth | None, list[StoredReport]]:
    """The person, their engine state and their reports of [first, last], in one query."""
    params = {"person_id": person_id, "first": first, "last": last}
    rows = (await session.execute(_LOAD_FOR_CHECKIN, params)).all()
    if not rows:
        return None, []
    return person_from_row(rows[0]), [_stored(r) for r in rows if r.report_id is not None]


_WRITE_LOCKS: WeakKeyDictionary[Any, asyncio.Lock] = WeakKeyDictionary()


def write_lock(sessions: async_sessionmaker[AsyncSession]) -> AbstractAsyncContextManager[Any]:
    """SQLite has one writer: writers of this process queue here, not in SQLite's busy
    handler (which sleeps 1, 2, 5, 10 … ms between tries). PostgreSQL needs no such lock."""
    bind = sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _WRITE_LOCKS.get(bind.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[bind.sync_engine] = asyncio.Lock()
    return lock


async def latest_report(session: AsyncSession, person_id: int, before: date) -> Report | None:
    stmt = (
        select(HealthReport)
        .where(HealthReport.person_id == person_id, HealthReport.day < before)
        .order_by(HealthReport.day.desc())
        .limit(1)
    )
    row = (await session.execute(stmt)).scalar_one_or_none()
    return None if row is None else report_from_row(row)


async def insert_report(session: AsyncSession, person_id: int, report: Report, source: str) -> int:
    values = {**report_values(report), "person_id": person_id, "source": source, "revision": 1}
    result = await session.execute(_INSERT_REPORT, values)
    return int(result.scalar_one())


async def replace_report(
    session: AsyncSession, stored: StoredReport, report: Report, source: str, now: datetime
) -> None:
    """Keep the day's earlier report as a revision, then overwrite it."""
    columns = [HealthReport.__table__.c[name] for name in REPORT_FIELDS]
    await session.execute(
        insert(HealthReportRevision).from_select(
            ["report_id", *REPORT_FIELDS, "replaced_at"],
            select(
                HealthReport.id, *columns, literal(now, HealthReportRevision.replaced_at.type)
            ).where(HealthReport.id == stored.id),
        )
    )
    await session.execute(
        update(HealthReport)
        .where(HealthReport.id == stored.id)
        .values(**report_values(report), source=source, revision=stored.revision + 1)
    )


# --- state and status -------------------------------------------------------------------


async def save_state(
    session: AsyncSession, person: PersonHealth, values: dict[str, Any], now: datetime
) -> None:
    values = {**values, "updated_at": now}
    if person.has_state:
        await session.execute(
            update(HealthState).where(HealthState.person_id == person.person_id).values(values)
        )
    else:
        defaults = {"reasons": "[]", "rule_version": "", "missed_days": 0}
        await session.execute(
            insert(HealthState).values({**defaults, **values, "person_id": person.person_id})
        )


async def set_status(
    session: AsyncSession,
    person_id: int,
    before: Status,
    after: Standing,
    *,
    day: date,
    now: datetime,
    cause: str,
    rule_version: str,
    actor: str = "engine",
    report_id: int | None = None,
) -> None:
    """Write the live status and its history row (the caller decides it is a change)."""
    await session.execute(
        update(Person)
        .where(Person.id == person_id)
        .values(status=after.status.value, status_since=after.since or now)
    )
    await session.execute(
        insert(StatusChange).values(
            person_id=person_id,
            at=now,
            day=day,
            from_status=before.value,
            to_status=after.status.value,
            reasons=reasons_to_text(after.reasons),
            rule_version=rule_version,
            cause=cause,
            actor=actor,
            report_id=report_id,
        )
    )


async def status_history(session: AsyncSession, person_id: int, limit: int = 20) -> Sequence[Any]:
    stmt = (
        select(StatusChange)
        .where(StatusChange.person_id == person_id)
        .order_by(StatusChange.at.desc(), StatusChange.id.desc())
        .limit(limit)
    )
    return (await session.execute(stmt)).scalars().all()


# --- conditions as SQL --------------------------------------------------------------------


def where_sql(cond: Condition) -> ColumnElement[bool]:
    """A field condition as a WHERE clause on health_reports (for loading only the reports a
    history rule can count; the engine still evaluates every condition itself)."""
    c = HealthReport.__table__.c
    match cond:
        case FieldIs(field="symptoms", op=op, value=value):
            codes = sorted(value or ())
            wrapped = literal(";") + c.symptoms + literal(";")
            has = [wrapped.contains(f";{code};", autoescape=True) for code in codes]
            if op == "empty":
                return c.symptoms == ""
            if op == "not_empty":
                return c.symptoms != ""
            if op == "any_of":
                return or_(false(), *has)
            if op == "all_of":
                return and_(true(), *has) if has else false()
            return not_(or_(false(), *has))  # none_of
        case FieldIs(field=field, op=op, value=value):
            column = c[field]
            if op in ("empty", "not_empty"):
                return (column == "") if op == "empty" else (column != "")
            if op == "in":
                return column.in_(sorted(value))
            if op == "not_in":
                return column.not_in(sorted(value))
            return _SQL_COMPARE[op](column, value)
        case AllOf(parts=parts):
            return and_(*(where_sql(p) for p in parts))
        case AnyOf(parts=parts):
            return or_(*(where_sql(p) for p in parts))
        case Not(part=part):
            return not_(where_sql(part))
    raise ValueError(f"{cond!r} does not read a report's fields")


_SQL_COMPARE = {
    "==": lambda col, v: col == v,
    "!=": lambda col, v: col != v,
    ">=": lambda col, v: col >= v,
    ">": lambda col, v: col > v,
    "<=": lambda col, v: col <= v,
    "<": lambda col, v: col < v,
}
