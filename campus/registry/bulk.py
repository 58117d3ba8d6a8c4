"""Chunked reads and writes, so that an import of 100,000 rows runs a few hundred statements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar, TypeVarTuple

from sqlalchemy import Row, Select, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from storage.models import Base, Person, Place, Unit

# Rows per statement (and per progress step); an IN list this long stays far below the
# bound-parameter limits of SQLite (32,766) and asyncpg (32,767).
CHUNK = 1000

T = TypeVar("T")
Ts = TypeVarTuple("Ts")
Model = type[Unit] | type[Place] | type[Person]
Advance = Callable[[int], None]


class Linked(Protocol):
    """A row with a natural key and an optional reference to another row of the same table."""

    @property
    def key(self) -> str: ...

    @property
    def ref(self) -> str | None: ...


L = TypeVar("L", bound=Linked)


def table_of(model: type[Base]) -> Table:
    return model.metadata.tables[model.__tablename__]


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def select_in(
    session: AsyncSession,
    stmt: Select[*Ts],
    column: InstrumentedAttribute[Any],
    values: Iterable[Any],
) -> AsyncIterator[Row[*Ts]]:
    """Run `stmt` restricted to `column IN values`, a chunk of values at a time."""
    for part in chunks(sorted(set(values))):
        for row in await session.execute(stmt.where(column.in_(part))):
            yield row


async def write_linked(
    session: AsyncSession,
    model: Model,
    *,
    key: str,
    ref: str,
    creates: Sequence[L],
    updates: Sequence[tuple[int, L]],
    values: Callable[[L], dict[str, Any]],
    ids: dict[str, int],
    now: datetime,
    advance: Advance,
    on_create: Mapping[str, Any] | None = None,
) -> None:
    """Insert `creates` and update `updates` (id, row), then link references to new rows.

    `ids` maps the natural keys of stored rows to their ids and learns the new ones. A new row
    may refer to another new row anywhere in the file, so such references are set afterwards.
    `on_create` holds values that only new rows get.
    """
    # Core statements on the table: the ORM's bulk paths group rows by which values are None,
    # which splits a file of mixed rows into one statement per row.
    table = table_of(model)
    key_column = table.c[key]
    by_id = update(table).where(table.c.id == bindparam("_id"))
    dangling: list[tuple[str, str]] = []
    for part in chunks(creates):
        params = []
        for item in part:
            target = ids.get(item.ref) if item.ref is not None else None
            if item.ref is not None and target is None:
                dangling.append((item.key, item.ref))
            params.append(
                {
                    **(on_create or {}),
                    **values(item),
                    key: item.key,
                    ref: target,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        await session.execute(insert(table), params)
        new_ids = select(table.c.id, key_column).where(key_column.in_([item.key for item in part]))
        ids.update((row_key, row_id) for row_id, row_key in await session.execute(new_ids))
        advance(len(part))
    for changed in chunks(updates):
        params = [
            {
                "_id": row_id,
                **values(item),
                ref: ids[item.ref] if item.ref is not None else None,
                "updated_at": now,
            }
            for row_id, item in changed
        ]
        await session.execute(by_id, params)
        advance(len(changed))
    for links in chunks(dangling):
        params = [{"_id": ids[row_key], ref: ids[ref_key]} for row_key, ref_key in links]
        await session.execute(by_id, params)
