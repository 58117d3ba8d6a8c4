"""Coalescing concurrent calls into one: many callers, one query, one transaction.

At a busy gate several scans arrive while the database is still answering the previous
one; at 8 a.m. hundreds of check-ins arrive in the same second. Instead of a query (and, for
writes, a transaction and a commit) each, the calls that queue up meanwhile go together in
the next round trip: one `WHERE id IN (…)` read, one multi-row insert, one commit. A lone
call goes out at once, so nothing waits on a timer. One round trip at a time also means one
writer per batcher, so SQLite writers do not queue on its file lock.

Used by guard scans (campus/access/gate.py), principal look-ups (campus/accounts.py) and
check-ins (campus/health/checkin.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import ARRAY, ColumnElement, Select, any_, bindparam, func, literal_column, select
from sqlalchemy.orm import QueryableAttribute

from bot.metrics import BATCH_SIZE

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Failed:
    """A result of `run` that is an error for its own caller only: for a batch that wrote
    part of its items and must not be retried whole (the retry would write them again)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class Batcher(Generic[T, R]):
    """`await submit(item)` → the item's result from `run(batch)`, batches of ≤ max_batch.

    `run` returns one result per item, in order; a `Failed` one raises its error in that
    item's caller. If `run` raises for a batch of several, each item is retried alone, so
    one bad item fails only its own caller.
    """

    def __init__(
        self,
        run: Callable[[Sequence[T]], Awaitable[Sequence[R | Failed]]],
        *,
        max_batch: int = 200,
        name: str = "other",
    ) -> None:
        self._run = run
        self._max = max_batch
        self._sizes = BATCH_SIZE.labels(name)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            # One more turn of the loop before the first batch: the callbacks already due in
            # this turn (other requests on their way here) join it. Nothing waits on a timer.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self._max]
                del self._pending[: self._max]
                self._sizes.observe(len(batch))
                await self._settle(batch)
        finally:
            # Cancelled (shutdown): nobody may wait for ever.
            for _, future in self._pending:
                if not future.done():
                    future.cancel()

    async def _settle(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):  # never leave a caller waiting on a miscount
                raise RuntimeError(f"a batch of {len(batch)} gave {len(results)} results")
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            log.warning("a batch of %d failed (%s); retrying one by one", len(batch), exc)
            for one in batch:
                await self._settle([one])
            return
        except BaseException:
            for _, future in batch:
                if not future.done():
                    future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Failed):
                _fail(future, result.error)
            elif not future.done():
                future.set_result(result)


def _fail(future: asyncio.Future[R], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def one_of(
    column: ColumnElement[Any] | QueryableAttribute[Any], name: str, dialect: str
) -> ColumnElement[bool]:
    """`column IN (the list bound as `name`)` as one fixed statement whatever the list's
    length, so it is compiled once: SQLAlchemy's expanding IN re-renders the SQL on every
    execution, which for a batch costs more than SQLite takes to run it. The list is bound
    by `bound_list`: a JSON array read by json_each on SQLite, an array on PostgreSQL."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    listed: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam(name))
    )
    return column.in_(listed.scalar_subquery())


def bound_list(values: Iterable[Any], dialect: str) -> Any:
    """The parameter for `one_of`."""
    items = list(values)
    return items if dialect == "postgresql" else json.dumps(items)
