"""Return batches: batches.csv (who may apply, the arrival window, a daily quota) and the
places left per day.

A day's places are a counter row per (batch, day) moved only by conditional UPDATEs, so two
students racing for the last place cannot both get it (PostgreSQL re-checks the condition
after the row lock; SQLite has one writer at a time).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from campus.registry import fields
from campus.registry.bulk import Advance
from campus.registry.csvfile import Rows
from campus.registry.report import ImportReport
from storage.models import Unit
from storage.models_returns import ReturnBatch, ReturnBatchUnit, ReturnDayCount

KINDS = ("graduate", "non_graduate", "freshman")
MAX_QUOTA = 1_000_000
MAX_WINDOW_DAYS = 366


def kind(value: str) -> str:
    if value not in KINDS:
        raise fields.Invalid(f"unknown kind {value[:80]!r} (one of {', '.join(KINDS)})")
    return value


def iso_date(value: str) -> date:
    if not value:
        raise fields.Invalid("is empty")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise fields.Invalid(f"{value[:40]!r} is not a date YYYY-MM-DD") from None


def quota(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_QUOTA:
        raise fields.Invalid(f"{value[:40]!r} is not a whole number from 1 to {MAX_QUOTA}")
    return int(value)


def unit_codes(value: str) -> tuple[str, ...]:
    return tuple(sorted({fields.code(p.strip()) for p in value.split(";") if p.strip()}))


@dataclass(slots=True)
class BatchRow:
    line: int
    code: str
    name: str
    kind: str
    unit_codes: tuple[str, ...]
    arrive_from: date
    arrive_to: date
    daily_quota: int

    def values(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "arrive_from": self.arrive_from,
            "arrive_to": self.arrive_to,
            "daily_quota": self.daily_quota,
        }


@dataclass
class BatchPlan:
    unit_ids: dict[str, int]
    creates: list[BatchRow] = field(default_factory=list)
    updates: list[tuple[int, BatchRow]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates)

    async def write(self, session: AsyncSession, now: datetime, advance: Advance) -> None:
        for row in self.creates:
            batch_id = (
                await session.execute(
                    insert(ReturnBatch)
                    .values(code=row.code, created_at=now, updated_at=now, **row.values())
                    .returning(ReturnBatch.id)
                )
            ).scalar_one()
            await self._units(session, batch_id, row)
            advance(1)
        for batch_id, row in self.updates:
            await session.execute(
                update(ReturnBatch)
                .where(ReturnBatch.id == batch_id)
                .values(updated_at=now, **row.values())
            )
            await session.execute(
                delete(ReturnBatchUnit).where(ReturnBatchUnit.batch_id == batch_id)
            )
            await self._units(session, batch_id, row)
            advance(1)

    async def _units(self, session: AsyncSession, batch_id: int, row: BatchRow) -> None:
        if row.unit_codes:
            await session.execute(
                insert(ReturnBatchUnit),
                [{"batch_id": batch_id, "unit_id": self.unit_ids[c]} for c in row.unit_codes],
            )


async def prepare_batches(session: AsyncSession, rows: Rows, report: ImportReport) -> BatchPlan:
    units = {code: uid for uid, code in await session.execute(select(Unit.id, Unit.code))}
    stored: dict[str, tuple[int, tuple[Any, ...]]] = {}
    stored_units: dict[int, set[str]] = {}
    codes_by_id = {uid: code for code, uid in units.items()}
    for batch_id, unit_id in await session.execute(
        select(ReturnBatchUnit.batch_id, ReturnBatchUnit.unit_id)
    ):
        stored_units.setdefault(batch_id, set()).add(codes_by_id.get(unit_id, ""))
    for known in (await session.execute(select(ReturnBatch))).scalars():
        stored[known.code] = (
            known.id,
            (
                known.name,
                known.kind,
                known.arrive_from,
                known.arrive_to,
                known.daily_quota,
                tuple(sorted(stored_units.get(known.id, ()))),
            ),
        )
    plan = BatchPlan(unit_ids=units)
    seen: dict[str, int] = {}
    parsed: list[BatchRow] = []
    for line, row in report.rows_of(rows):
        check = fields.RowCheck(report, line, row)
        code = check("code", fields.code)
        name = check("name", fields.name)
        batch_kind = check("kind", kind)
        codes = check("unit_codes", unit_codes)
        start = check("arrive_from", iso_date)
        end = check("arrive_to", iso_date)
        per_day = check("daily_quota", quota)
        if code is not None:
            if code in seen:
                check.bad("code", f"{code!r} is repeated (first on line {seen[code]})")
            else:
                seen[code] = line
        for unit in codes or ():
            if unit not in units:
                check.bad("unit_codes", f"unknown unit {unit!r}")
        if start is not None and end is not None:
            if end < start:
                check.bad("arrive_to", f"{end} is before arrive_from {start}")
            elif (end - start).days >= MAX_WINDOW_DAYS:
                check.bad("arrive_to", f"a window of {(end - start).days + 1} days is too long")
        if check.ok:
            assert code and name and batch_kind and codes is not None
            assert start is not None and end is not None and per_day is not None
            parsed.append(BatchRow(line, code, name, batch_kind, codes, start, end, per_day))
    if not report.ok:
        return plan
    for batch in parsed:
        if batch.code not in stored:
            plan.creates.append(batch)
            continue
        batch_id, values = stored[batch.code]
        new = (
            batch.name,
            batch.kind,
            batch.arrive_from,
            batch.arrive_to,
            batch.daily_quota,
            batch.unit_codes,
        )
        if values == new:
            report.unchanged += 1
        else:
            plan.updates.append((batch_id, batch))
    report.created, report.updated = len(plan.creates), len(plan.updates)
    return plan


# -- the places per day ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchInfo:
    id: int
    code: str
    name: str
    kind: str
    arrive_from: date
    arrive_to: date
    daily_quota: int

    @staticmethod
    def of(batch: ReturnBatch) -> BatchInfo:
        return BatchInfo(
            batch.id,
            batch.code,
            batch.name,
            batch.kind,
            batch.arrive_from,
            batch.arrive_to,
            batch.daily_quota,
        )

    def days_from(self, first: date) -> list[date]:
        start = max(self.arrive_from, first)
        return [start + timedelta(days=i) for i in range((self.arrive_to - start).days + 1)]


# The unit tree changes only by import; every submission and approval walks it, so it is
# read whole (one query) and kept a minute per database engine.
TREE_TTL = 60.0
_trees: weakref.WeakKeyDictionary[Any, tuple[float, dict[int, int | None]]] = (
    weakref.WeakKeyDictionary()
)


async def _parents(session: AsyncSession, unit_id: int) -> dict[int, int | None]:
    engine = session.get_bind()
    cached = _trees.get(engine)
    if cached is not None and time.monotonic() - cached[0] < TREE_TTL and unit_id in cached[1]:
        return cached[1]
    parents: dict[int, int | None] = {
        uid: parent for uid, parent in await session.execute(select(Unit.id, Unit.parent_id))
    }
    _trees[engine] = (time.monotonic(), parents)
    return parents


async def ancestors(session: AsyncSession, unit_id: int) -> list[int]:
    """The unit, its parent, its parent's parent …"""
    parents = await _parents(session, unit_id)
    chain: list[int] = []
    current: int | None = unit_id
    while current is not None and current not in chain:
        chain.append(current)
        current = parents.get(current)
    return chain


async def batches_for(
    session: AsyncSession, unit_chain: Collection[int], today: date
) -> list[BatchInfo]:
    """Batches a member of the unit (whose ancestry is `unit_chain`) may still apply to."""
    restricted = select(ReturnBatchUnit.batch_id).distinct()
    admitted = select(ReturnBatchUnit.batch_id).where(ReturnBatchUnit.unit_id.in_(list(unit_chain)))
    stmt = (
        select(ReturnBatch)
        .where(
            ReturnBatch.arrive_to >= today,
            ReturnBatch.id.not_in(restricted) | ReturnBatch.id.in_(admitted),
        )
        .order_by(ReturnBatch.arrive_from, ReturnBatch.code)
    )
    return [BatchInfo.of(b) for b in (await session.execute(stmt)).scalars()]


async def days_left(session: AsyncSession, batch: BatchInfo, first: date) -> list[tuple[date, int]]:
    """(day, places left) for each day of the window from `first` that has a place left."""
    taken = dict(
        (
            await session.execute(
                select(ReturnDayCount.day, ReturnDayCount.taken).where(
                    ReturnDayCount.batch_id == batch.id, ReturnDayCount.day >= first
                )
            )
        ).all()
    )
    return [
        (day, batch.daily_quota - taken.get(day, 0))
        for day in batch.days_from(first)
        if taken.get(day, 0) < batch.daily_quota
    ]


async def take_place(session: AsyncSession, batch: BatchInfo, day: date) -> bool:
    """Take one place on `day`; False when the day is full (atomic under concurrency)."""
    stmt = (
        update(ReturnDayCount)
        .where(
            ReturnDayCount.batch_id == batch.id,
            ReturnDayCount.day == day,
            ReturnDayCount.taken < batch.daily_quota,
        )
        .values(taken=ReturnDayCount.taken + 1)
    )
    if (await session.execute(stmt)).rowcount == 1:  # type: ignore[attr-defined]
        return True
    await _ensure_row(session, batch.id, day)
    return (await session.execute(stmt)).rowcount == 1  # type: ignore[attr-defined]


async def give_back(session: AsyncSession, batch_id: int, day: date) -> None:
    await session.execute(
        update(ReturnDayCount)
        .where(
            ReturnDayCount.batch_id == batch_id,
            ReturnDayCount.day == day,
            ReturnDayCount.taken > 0,
        )
        .values(taken=ReturnDayCount.taken - 1)
    )


async def _ensure_row(session: AsyncSession, batch_id: int, day: date) -> None:
    values = {"batch_id": batch_id, "day": day, "taken": 0}
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        await session.execute(pg_insert(ReturnDayCount).values(values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        await session.execute(sqlite_insert(ReturnDayCount).values(values).on_conflict_do_nothing())
