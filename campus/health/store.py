"""Reading and writing the health tables; every function takes the caller's AsyncSession."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
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
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

from campus.health.conditions import AllOf, AnyOf, Condition, FieldIs, Not
from campus.health.model import (
    Reason,
    Report,
    Standing,
    Status,
    reasons_from_text,
    reasons_to_text,
)
from storage import raw
from storage.batching import bound_list, one_of
from storage.engine import write_lock as write_lock  # re-exported: writers import it here
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
# costs more than SQLite takes to run it. Check-ins arriving together are read and written
# together (campus/health/checkin.py): one read, one multi-row insert, one commit.
@functools.cache
def _load_for_checkin(dialect: str) -> Select[*tuple[Any, ...]]:
    return (
        select(*PERSON_COLUMNS, *_REPORT_COLUMNS)
        .outerjoin(HealthState, HealthState.person_id == Person.id)
        .outerjoin(
            HealthReport,
            and_(
                HealthReport.person_id == Person.id,
                HealthReport.day.between(bindparam("first"), bindparam("last")),
            ),
        )
        .where(one_of(Person.id, "person_ids", dialect))
        .order_by(Person.id, HealthReport.day)
    )


_INSERT_REPORT = insert(HealthReport).returning(HealthReport.id)
_INSERT_REPORTS = insert(HealthReport)  # executemany: no ids come back
_TABLE = HealthReport.__table__
_KEEP_REVISIONS = insert(HealthReportRevision).from_select(
    ["report_id", *REPORT_FIELDS, "replaced_at"],
    select(
        HealthReport.id,
        *(_TABLE.c[name] for name in REPORT_FIELDS),
        bindparam("replaced_at", type_=HealthReportRevision.replaced_at.type),
    ).where(HealthReport.id == bindparam("report_id")),
)
_OVERWRITE_FIELDS = (*REPORT_FIELDS[1:],)  # all but person_id
_OVERWRITE = (
    update(HealthReport)
    .where(HealthReport.id == bindparam("report_id"))
    .values(
        {name: bindparam(f"new_{name}", type_=_TABLE.c[name].type) for name in _OVERWRITE_FIELDS}
    )
)


async def load_for_checkin(
    session: AsyncSession, person_ids: Sequence[int], first: date, last: date
) -> dict[int, tuple[PersonHealth, list[StoredReport]]]:
    """The persons, their engine state and their reports of [first, last], in one query."""
    conn = await session.connection()  # Core: none of the ORM's per-statement bookkeeping
    dialect = conn.dialect.name
    params = {"person_ids": bound_list(person_ids, dialect), "first": first, "last": last}
    return _by_person(await conn.execute(_load_for_checkin(dialect), params))


class RawCheckin:
    """The check-in batch's statements for storage/raw.py (see CheckinService): the read of
    `load_for_checkin`, the insert of `insert_reports`, the two of `replace_reports`."""

    def __init__(self, dialect: Dialect) -> None:
        self.load = raw.Statement(_load_for_checkin(dialect.name), dialect)
        self.insert = raw.Statement(
            insert(HealthReport), dialect, columns=(*REPORT_FIELDS, "source", "revision")
        )
        self.keep = raw.Statement(_KEEP_REVISIONS, dialect)
        self.overwrite = raw.Statement(_OVERWRITE, dialect)
        self.latest = raw.Statement(_LATEST_REPORT, dialect)
        self.dialect = dialect.name

    async def load_for_checkin(
        self, tx: raw.Transaction, person_ids: Sequence[int], first: date, last: date
    ) -> dict[int, tuple[PersonHealth, list[StoredReport]]]:
        params = {"person_ids": bound_list(person_ids, self.dialect), "first": first, "last": last}
        return _by_person(await tx.fetch(self.load, params))

    async def latest_report(
        self, tx: raw.Transaction, person_id: int, before: date
    ) -> Report | None:
        rows = await tx.fetch(self.latest, {"person_id": person_id, "before": before})
        return report_from_row(rows[0]) if rows else None

    async def insert_reports(
        self, tx: raw.Transaction, reports: Sequence[tuple[int, Report, str]]
    ) -> None:
        await tx.execute_many(self.insert, _report_rows(reports))

    async def replace_reports(
        self,
        tx: raw.Transaction,
        replacements: Sequence[tuple[StoredReport, Report, str, datetime]],
    ) -> None:
        await tx.execute_many(self.keep, _revision_rows(replacements))
        await tx.execute_many(self.overwrite, _overwrite_rows(replacements))


def _by_person(rows: Iterable[Any]) -> dict[int, tuple[PersonHealth, list[StoredReport]]]:
    found: dict[int, tuple[PersonHealth, list[StoredReport]]] = {}
    for row in rows:
        entry = found.get(row.id)
        if entry is None:
            entry = found[row.id] = (person_from_row(row), [])
        if row.report_id is not None:
            entry[1].append(_stored(row))
    return found


def _report_rows(reports: Sequence[tuple[int, Report, str]]) -> list[dict[str, Any]]:
    return [
        {**report_values(report), "person_id": person_id, "source": source, "revision": 1}
        for person_id, report, source in reports
    ]


def _revision_rows(
    replacements: Sequence[tuple[StoredReport, Report, str, datetime]],
) -> list[dict[str, Any]]:
    return [{"report_id": old.id, "replaced_at": now} for old, _, _, now in replacements]


def _overwrite_rows(
    replacements: Sequence[tuple[StoredReport, Report, str, datetime]],
) -> list[dict[str, Any]]:
    return [
        {
            "report_id": old.id,
            **{f"new_{name}": value for name, value in report_values(report).items()},
            "new_source": source,
            "new_revision": old.revision + 1,
        }
        for old, report, source, _ in replacements
    ]


async def insert_report(session: AsyncSession, person_id: int, report: Report, source: str) -> int:
    values = {**report_values(report), "person_id": person_id, "source": source, "revision": 1}
    result = await session.execute(_INSERT_REPORT, values)
    return int(result.scalar_one())


async def insert_reports(session: AsyncSession, reports: Sequence[tuple[int, Report, str]]) -> None:
    """First reports of the day for (person_id, report, source), in one multi-row insert."""
    await (await session.connection()).execute(_INSERT_REPORTS, _report_rows(reports))


async def replace_reports(
    session: AsyncSession, replacements: Sequence[tuple[StoredReport, Report, str, datetime]]
) -> None:
    """Keep each day's earlier report as a revision (replaced at its own `now`, the last
    item), then overwrite it: two statements."""
    conn = await session.connection()
    await conn.execute(_KEEP_REVISIONS, _revision_rows(replacements))
    await conn.execute(_OVERWRITE, _overwrite_rows(replacements))


_LATEST_REPORT = (
    select(*_REPORT_COLUMNS)
    .where(HealthReport.person_id == bindparam("person_id"), HealthReport.day < bindparam("before"))
    .order_by(HealthReport.day.desc())
    .limit(1)
)


async def latest_report(session: AsyncSession, person_id: int, before: date) -> Report | None:
    """The person's last report before `before`, if any."""
    result = await session.execute(_LATEST_REPORT, {"person_id": person_id, "before": before})
    row = result.first()
    return None if row is None else report_from_row(row)


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
