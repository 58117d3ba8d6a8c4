"""Hot-path statements on the driver's own connection, compiled once by SQLAlchemy.

A guard's scan and a check-in each make a short transaction: a read of a few rows, a
multi-row insert, a commit. Through SQLAlchemy's asyncio engine every statement also pays for
the greenlet hand-off, the Connection and Transaction wrappers, the execution context and the
Result object: on one core a lone scan's transaction took about 0.6 ms that way, of which the
database's own work was under 0.1 ms (bench/README.md, issue 7).

Here the statements are still written with SQLAlchemy Core and compiled by the engine's
dialect (the same SQL, the same parameter style), and every value passes through its column
type's own bind and result processors (UTCDateTime, Date, Boolean): a row written or read
here is the row the ORM would write or read. Only the execution is the driver's: sqlite3
inline on the event loop (storage/inloop.py, with its busy retries and checkpoints),
aiosqlite, or asyncpg. The connection is the engine's pooled one, checked out for the
transaction and returned after it.

Use it for fixed statements on hot paths only; everything else goes through SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import namedtuple
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Insert, Select, Update
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from storage import inloop

Processor = Callable[[Any], Any] | None


class Statement:
    """One Core statement compiled for one dialect: SQL text, the order of its parameters and
    the type processors for them and for the columns it returns.

    An insert names its `columns`: a row's other keys are not written. Refused: statements
    that render values per execution (an expanding `IN`), columns with Python-side defaults
    not given, and result columns without a name of their own."""

    __slots__ = ("_any_result", "_params", "_results", "_row", "sql")

    def __init__(
        self,
        stmt: Select[*tuple[Any, ...]] | Insert | Update,
        dialect: Dialect,
        *,
        columns: Sequence[str] | None = None,
    ) -> None:
        if isinstance(stmt, Insert):
            # `inline`: no RETURNING of the new key, which an executemany cannot return.
            compiled = stmt.inline().compile(dialect=dialect, column_keys=columns)
        else:
            compiled = stmt.compile(dialect=dialect)
        if compiled.post_compile_params or compiled.literal_execute_params:
            # `IN (list)` and the like are rendered per execution: use storage/batching.py's
            # one_of, which binds a list as one parameter.
            raise ValueError("a statement for raw execution cannot render values per execution")
        if compiled.insert_prefetch or compiled.update_prefetch:
            # SQLAlchemy fills Python-side defaults in while it executes; here nobody would.
            missing = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(f"give the columns with Python-side defaults: {missing}")
        self.sql = compiled.string
        names = list(compiled.positiontup or ())
        if not names and compiled.binds:
            raise ValueError(f"{dialect.name} does not bind parameters by position")
        params: list[tuple[str, bool, Any, Processor]] = []
        for name in names:
            bind = compiled.binds[name]
            # A literal of the statement (`live == 1`) carries its value; the rest are given.
            fixed = not bind.required
            value = bind.effective_value if fixed else None
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            params.append((name, fixed, value, process))
        self._params = tuple(params)
        selected = list(stmt.selected_columns) if isinstance(stmt, Select) else []
        self._results: tuple[Processor, ...] = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in selected
        )
        self._any_result = any(p is not None for p in self._results)
        # Rows read by position or by the column's name (its label), as SQLAlchemy's Row.
        keys = [column.key for column in selected]
        names = [key for key in keys if key is not None]
        if len(set(names)) != len(keys):
            raise ValueError(f"label every column, each with its own name: {keys}")
        self._row: Any = namedtuple("Row", names)  # type: ignore[misc]

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for `values` (by bind name), processed for the driver."""
        out = []
        for name, fixed, value, process in self._params:
            if not fixed:
                value = values[name]
            out.append(value if process is None else process(value))
        return tuple(out)

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Any]:
        """The driver's rows, each value through its column type's result processor; a row
        is a named tuple of the statement's columns."""
        make = self._row._make
        if not self._any_result:
            return [make(row) for row in raw]
        procs = self._results
        return [
            make([v if p is None else p(v) for v, p in zip(row, procs, strict=True)]) for row in raw
        ]


class Transaction(Protocol):
    async def fetch(self, stmt: Statement, values: Mapping[str, Any]) -> list[Any]:
        """The rows `stmt` reads, processed."""

    async def execute(self, stmt: Statement, values: Mapping[str, Any]) -> int:
        """Run `stmt` once; the number of rows it changed."""

    async def execute_many(self, stmt: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run `stmt` for each of `rows`."""

    async def execute_params(self, stmt: Statement, params: Sequence[tuple[Any, ...]]) -> None:
        """Run `stmt` for each of `params`, made by `stmt.params` already."""


class _InlineSQLite:
    """storage/inloop.py's connection: sqlite3 calls on the loop's thread, retried if busy."""

    __slots__ = ("_conn", "_db")

    def __init__(self, conn: inloop.Connection) -> None:
        self._conn = conn
        self._db = conn.sqlite

    async def fetch(self, stmt: Statement, values: Mapping[str, Any]) -> list[Any]:
        cursor = await inloop.patiently(self._db.execute, stmt.sql, stmt.params(values))
        try:
            return stmt.rows(cursor.fetchall())
        finally:
            cursor.close()

    async def execute(self, stmt: Statement, values: Mapping[str, Any]) -> int:
        cursor = await inloop.patiently(self._db.execute, stmt.sql, stmt.params(values))
        count = cursor.rowcount
        cursor.close()
        return count

    async def execute_many(self, stmt: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.execute_params(stmt, [stmt.params(row) for row in rows])

    async def execute_params(self, stmt: Statement, params: Sequence[tuple[Any, ...]]) -> None:
        cursor = await inloop.patiently(self._db.executemany, stmt.sql, params)
        cursor.close()

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        self._db.rollback()

    def idle(self) -> bool:
        return not self._db.in_transaction


class _AioSQLite:
    """aiosqlite's connection (an engine made with `sqlite_inloop=False`)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def fetch(self, stmt: Statement, values: Mapping[str, Any]) -> list[Any]:
        cursor = await self._conn.execute(stmt.sql, stmt.params(values))
        try:
            return stmt.rows(await cursor.fetchall())
        finally:
            await cursor.close()

    async def execute(self, stmt: Statement, values: Mapping[str, Any]) -> int:
        cursor = await self._conn.execute(stmt.sql, stmt.params(values))
        count: int = cursor.rowcount
        await cursor.close()
        return count

    async def execute_many(self, stmt: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.execute_params(stmt, [stmt.params(row) for row in rows])

    async def execute_params(self, stmt: Statement, params: Sequence[tuple[Any, ...]]) -> None:
        cursor = await self._conn.executemany(stmt.sql, params)
        await cursor.close()

    async def commit(self) -> None:
        await self._conn.commit()

    async def rollback(self) -> None:
        await self._conn.rollback()

    def idle(self) -> bool:
        return not self._conn.in_transaction


class _Asyncpg:
    """asyncpg's connection, in a transaction of its own (SQLAlchemy's adapter has none open
    on a connection fresh from the pool, and finds none when it is returned)."""

    __slots__ = ("_conn", "_tx")

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._tx: Any = None

    async def begin(self) -> None:
        self._tx = self._conn.transaction()
        await self._tx.start()

    async def fetch(self, stmt: Statement, values: Mapping[str, Any]) -> list[Any]:
        return stmt.rows(await self._conn.fetch(stmt.sql, *stmt.params(values)))

    async def execute(self, stmt: Statement, values: Mapping[str, Any]) -> int:
        status: str = await self._conn.execute(stmt.sql, *stmt.params(values))
        # "UPDATE 1", "INSERT 0 1", "DELETE 3": the count is the last word.
        return int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0

    async def execute_many(self, stmt: Statement, rows: Sequence[Mapping[str, Any]]) -> None:
        await self.execute_params(stmt, [stmt.params(row) for row in rows])

    async def execute_params(self, stmt: Statement, params: Sequence[tuple[Any, ...]]) -> None:
        await self._conn.executemany(stmt.sql, params)

    async def commit(self) -> None:
        await self._tx.commit()

    async def rollback(self) -> None:
        if self._tx is not None:
            await self._tx.rollback()

    def idle(self) -> bool:
        return not self._conn.is_closed() and not self._conn.is_in_transaction()


def supported(engine: AsyncEngine) -> bool:
    """Whether `transaction` can run on this engine's driver."""
    return engine.dialect.driver in ("aiosqlite", "asyncpg")


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine, *, reads: bool = False) -> AsyncIterator[Transaction]:
    """A transaction on a pooled connection's driver: committed when the block ends, rolled
    back if it raises. On SQLite the writer's lock is taken by the first write, as with
    SQLAlchemy's own transactions there (the sqlite3 module's implicit BEGIN).

    `reads`: the block only reads, each statement on its own (no BEGIN and COMMIT round
    trips on PostgreSQL)."""
    fairy = await engine.raw_connection()
    clean = False  # the connection is known to be outside any transaction
    try:
        driver = fairy.driver_connection
        tx: _InlineSQLite | _AioSQLite | _Asyncpg
        if isinstance(driver, inloop.Connection):
            tx = _InlineSQLite(driver)
        elif engine.dialect.driver == "aiosqlite":
            tx = _AioSQLite(driver)
        elif engine.dialect.driver == "asyncpg":
            tx = _Asyncpg(driver)
            if not reads:
                await tx.begin()
        else:
            raise TypeError(f"no raw transactions on {engine.dialect.driver}")
        try:
            yield tx
        except BaseException as exc:
            _scrub(exc)
            clean = await _rolled_back(tx)
            raise
        if not reads:
            try:
                await tx.commit()
            except BaseException as exc:
                _scrub(exc)
                clean = await _rolled_back(tx)
                raise
        clean = True
    finally:
        if clean:
            await greenlet_spawn(fairy.close)
        else:
            # Interrupted in its BEGIN, COMMIT or ROLLBACK (a cancellation, a lost server):
            # the connection may still be inside a transaction, which the pool's reset would
            # not end (SQLAlchemy's adapter knows nothing of it). It is closed, not reused.
            await greenlet_spawn(fairy.invalidate)


async def _rolled_back(tx: _InlineSQLite | _AioSQLite | _Asyncpg) -> bool:
    """Roll back; whether the connection is now outside any transaction. A second
    cancellation may cut the rollback short (then it is not known to be); a rollback that
    fails because the server already ended the transaction (a COMMIT it refused) is fine."""
    try:
        await tx.rollback()
    except Exception:
        return tx.idle()
    return True


def _scrub(exc: BaseException) -> None:
    """As storage/engine.py does for SQLAlchemy's errors: the driver's DETAIL repeats the
    values at fault (personal data), so it leaves the exception before any log sees it."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return
        if getattr(seen, "detail", None) and not isinstance(seen, sqlite3.Error):
            with contextlib.suppress(AttributeError):
                seen.detail = None  # type: ignore[attr-defined]
        seen = seen.__cause__ or seen.__context__


__all__ = ["Statement", "Transaction", "supported", "transaction"]
