"""Rows written behind: queued at once, committed in the background, in batches.

A guard at a gate waits for ✅ or ⛔, not for the disk. When every scan's reply waited for its
access record's commit, the disk was in every reply: on a shared disk a WAL checkpoint's sync
sometimes took 100-465 ms, and every scan answered meanwhile waited for it, some of them
inside a write that held the event loop itself (bench/README.md, issue 7). Here the rows of
a decision that needs nothing more of the database are queued in memory, and one writer
commits them, a batch at a time:

- on a SQLite file (storage/inloop.py's engine), on a thread of its own with a connection of
  its own: the sqlite3 module lets go of the GIL while SQLite works, so a write or a sync that
  stalls holds up the writer, never the event loop. A batch is one statement whatever its
  size (the rows as one JSON array, read by `json_each`), so the thread takes the GIL back
  twice a batch, not once a row;
- elsewhere, through storage/raw.py: on PostgreSQL (asyncpg) that never blocks the loop; an
  in-memory SQLite, which only its engine's own connection can see, is written on the loop's
  thread (as everything else there is).

What it promises, and what it costs:

- **Soon.** The writer lingers LINGER (50 ms) to gather a batch, or less when a batch is full
  or somebody waits (`flushed()`, `room()`, `close()`); a row is committed about that long
  after it is put on a quiet disk, the stall's length later on a stalled one.
- **Checked when put.** A row's values go through its columns' bind processors (and, for the
  thread, into JSON) in `put()`: a value that cannot be written fails its caller there, and
  nothing of the call is queued.
- **Kept through errors.** A batch that fails for any other reason than its rows' own (a lost
  connection, a locked database, a full disk) stays queued and is tried again after 0.1 s,
  doubling to 5 s. A batch the database refuses (an integrity error) is halved until the
  refused row is found; that row is logged (the queue's name and the error's class, no
  values), counted (`healthbot_rows_behind_dropped`) and dropped, so it cannot hold up the
  others. A commit whose answer is lost (the connection drops during COMMIT) may have been
  made: before a failed batch is written again, the writer looks for its first and last
  rows (equal in every column) and, if both are there, counts the batch as written. A
  commit that becomes visible only later (PostgreSQL still waiting on a synchronous
  standby) is not found, and its batch is written twice; a row identical in every column,
  time included, already there would make a batch never written count as written. On a
  SQLite file a commit's outcome is never in doubt, and nothing is looked for.
- **Bounded, for callers that ask.** `full()` says whether more rows would take the queue
  past `backlog`; `room()` waits until the writer has caught up, or raises Backlogged. A
  caller that checks turns a database that is down into slow answers and then its own
  errors, not into memory that grows for ever. `put()` itself never waits nor refuses.
- **Written at shutdown.** `close()` commits what is queued before the engine closes.
- **The cost.** Until its batch commits, a row is in this process's memory only: a process
  killed outright (SIGKILL, the OOM killer) loses the rows not yet committed, usually one
  batch. SQLite with `synchronous=NORMAL`, as the service runs it, already gives up the last
  commits to a power loss. Use it only for rows nothing else in the same request depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    func,
    insert,
    literal,
    literal_column,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import ROWS_BEHIND, ROWS_BEHIND_DROPPED
from storage import raw
from storage.engine import sqlite_file
from storage.inloop import Connector

log = logging.getLogger(__name__)

RETRY_FIRST, RETRY_MAX = 0.1, 5.0  # seconds between tries of a batch that failed
LINGER = 0.05  # seconds the writer waits for more rows before a batch (see _pause)
# NaN would be JSON that SQLite cannot read. One encoder: json.dumps with any option set
# builds a new one on every call.
_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_REFUSED = frozenset(
    # The database's (or the driver's) word that a row is wrong, whatever the driver.
    ("IntegrityError", "IntegrityConstraintViolationError", "DataError", "TypeError")
)


class Backlogged(Exception):
    """The writer is too far behind (the database is down or stalled) for more rows now."""


def _refused(exc: BaseException) -> bool:
    return any(cls.__name__ in _REFUSED for cls in type(exc).__mro__)


class RowsBehind:
    """Rows of one table's `columns`, written behind (see the module's docstring)."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: Table,
        columns: Sequence[str],
        *,
        name: str,
        max_batch: int = 1000,
        backlog: int = 20_000,
        linger: float = LINGER,
    ) -> None:
        self._name = name
        self._columns = tuple(columns)
        self._max = max_batch
        self._backlog = backlog
        self._linger = linger
        self._wakeup: asyncio.Future[None] | None = None  # ends the writer's linger early
        self._rows: list[Any] = []  # as the writer prepared them
        self._put = 0  # rows put, ever
        self._settled = 0  # rows committed or dropped, ever: always the oldest first
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()  # (rows settled, …)
        self._task: asyncio.Task[None] | None = None
        self._unsure = 0  # rows at the front whose write failed: committed, or not?
        self._closed = False
        self._depth = ROWS_BEHIND.labels(name)
        self._dropped = ROWS_BEHIND_DROPPED.labels(name)
        self._writer: _Writer
        connector = sqlite_file(engine)
        if connector is not None:
            self._writer = _ThreadWriter(engine, connector, table, self._columns, name)
        else:
            self._writer = _RawWriter(engine, table, self._columns)

    @property
    def waiting(self) -> int:
        """Rows put and not committed yet."""
        return len(self._rows)

    def full(self, more: int = 1) -> bool:
        """Whether `more` rows would take the queue past its backlog."""
        return len(self._rows) + more > self._backlog

    async def room(self, more: int, timeout: float) -> None:
        """Wait until `more` rows fit; Backlogged after `timeout` seconds."""
        if not self.full(more):
            return
        # One timeout for the whole wait: a loop that waited out what is left of it each time
        # round would spin in its last fraction of a millisecond on uvloop, whose clock counts
        # whole milliseconds and runs a shorter timer at once.
        try:
            async with asyncio.timeout(timeout):
                while self.full(more):
                    # the oldest row waiting, committed: room for one more batch at least
                    await asyncio.shield(self._wait_for(self._settled + 1))
        except TimeoutError:
            raise Backlogged(f"{self._name}: {len(self._rows)} rows waiting") from None

    def put(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue `rows` (each with every column named at construction) to be written; a row
        whose values cannot be written raises here, and none of `rows` is queued."""
        if self._closed:
            raise RuntimeError(f"{self._name}: rows put after close")
        if not rows:
            return
        prepare = self._writer.prepare
        self._rows.extend([prepare(row) for row in rows])
        self._put += len(rows)
        self._depth.set(len(self._rows))
        if len(self._rows) >= self._max:
            self._hurry()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name=f"rows-behind-{self._name}")

    async def flushed(self) -> None:
        """Wait until every row put so far is committed (or dropped as refused)."""
        if self._settled < self._put:
            await asyncio.shield(self._wait_for(self._put))

    async def close(self, timeout: float = 20.0) -> None:
        """Commit what is queued (for at most `timeout` seconds), then stop. Once."""
        if self._closed:
            return
        self._closed = True
        self._hurry()
        flushed = False
        try:
            await asyncio.wait_for(self.flushed(), timeout)
            flushed = True
        except TimeoutError:
            # Counts only: the rows themselves may be personal data.
            log.error(
                "%s: %d rows not known to be written within the %.0f s given at shutdown",
                self._name,
                self.waiting,
                timeout,
            )
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            await self._writer.close(wait=flushed)

    def _wait_for(self, settled: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((settled, future))
        self._hurry()  # somebody waits: no lingering
        return future

    def _hurry(self) -> None:
        if self._wakeup is not None:
            _settle_future(self._wakeup)

    async def _pause(self) -> None:
        """Linger before a batch, so that it takes in the rows of the next few milliseconds:
        each batch costs a hand-off to the writer's thread, a statement and a commit (WAL
        writes, and the loop's connections reading their pages afresh), whatever its size.
        Under a closed loop of guard scans, 50 ms batches cost about 7 µs a scan less than
        10 ms ones (eight alternated runs, bench/README.md). Cut short by a full batch, a
        caller waiting, or close()."""
        if self._linger <= 0 or self._waiters or self._closed or len(self._rows) >= self._max:
            return
        loop = asyncio.get_running_loop()
        self._wakeup = wakeup = loop.create_future()
        timer = loop.call_later(self._linger, _settle_future, wakeup)
        try:
            await wakeup
        finally:
            timer.cancel()
            self._wakeup = None

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for target, future in waiters:
            if future.done():
                continue
            if target <= self._settled:
                future.set_result(None)
            else:
                self._waiters.append((target, future))

    async def _drain(self) -> None:
        delay, failing = RETRY_FIRST, False
        while self._rows:
            await self._pause()
            batch = self._rows[: self._max]
            try:
                done = await self._landed() or await self._front(batch)
            except Exception as exc:
                if not failing:  # once a streak: the error's class, never its values
                    log.warning(
                        "%s: writing %d rows failed (%s); trying again",
                        self._name,
                        len(batch),
                        type(exc).__name__,
                    )
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if failing:
                log.info("%s: writing again", self._name)
            delay, failing = RETRY_FIRST, False
            del self._rows[:done]
            self._settled += done
            self._depth.set(len(self._rows))
            self._wake()

    async def _landed(self) -> int:
        """The rows of the last write that failed, if it was committed after all (its answer
        lost on the way back): they are settled, not written again. Else 0."""
        if not self._unsure:
            return 0
        unsure = min(self._unsure, len(self._rows))
        # A batch is one transaction: its first and last rows are both there, or neither.
        writer, first, last = self._writer, self._rows[0], self._rows[unsure - 1]
        if await writer.landed(first) and await writer.landed(last):  # raise while it is down
            self._unsure = 0
            log.warning(
                "%s: %d rows whose commit went unconfirmed had been written; not written again",
                self._name,
                unsure,
            )
            return unsure
        self._unsure = 0
        return 0

    async def _front(self, batch: list[Any]) -> int:
        """Commit `batch`, or as much of its front as can be: the rows settled (committed or
        dropped as refused), from the front. Raises only when none could be."""
        try:
            await self._writer.write(batch)
        except Exception as exc:
            if not _refused(exc):
                # Perhaps committed: the batch is the queue's front once the rows before it
                # are settled, and _landed looks for it before it is written again.
                self._unsure = len(batch)
                raise
            if len(batch) == 1:
                log.error("%s: a row was refused (%s) and dropped", self._name, type(exc).__name__)
                self._dropped.inc()
                return 1
        else:
            return len(batch)
        half = len(batch) // 2
        first = await self._front(batch[:half])
        if first < half:
            return first
        try:
            return first + await self._front(batch[half:])
        except Exception:
            return first  # the rest is tried again with the next batch


def _settle_future(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Writer:
    def prepare(self, row: Mapping[str, Any]) -> Any:
        """What the queue holds of `row`: its values made ready for the driver."""
        raise NotImplementedError

    async def write(self, rows: Sequence[Any]) -> None:
        raise NotImplementedError

    async def landed(self, row: Any) -> bool:
        """Whether `row` (as prepared) is in the table: asked of the first and last rows of
        a batch whose write failed, in case its commit was made and only the answer lost."""
        return False

    async def close(self, wait: bool) -> None:
        """Let go of the connection; `wait`: for a write under way to end first."""
        return None


class _RawWriter(_Writer):
    """One transaction on the loop through storage/raw.py, or SQLAlchemy's Core."""

    def __init__(self, engine: AsyncEngine, table: Table, columns: Sequence[str]) -> None:
        self._engine = engine
        self._table = table
        self._columns = tuple(columns)
        self._insert = insert(table)
        self._raw = (
            raw.Statement(self._insert, engine.dialect, columns=columns)
            if raw.supported(engine)
            else None
        )
        # _landed's look-ups, by the columns given a value, and their raw forms.
        self._finds: dict[tuple[str, ...], tuple[Select[Any], raw.Statement | None]] = {}

    def prepare(self, row: Mapping[str, Any]) -> Any:
        values = {column: row[column] for column in self._columns}
        if self._raw is None:
            return values
        # The driver's parameters, and the values themselves for _landed's look-up.
        return self._raw.params(row), values

    async def write(self, rows: Sequence[Any]) -> None:
        if self._raw is None:
            async with self._engine.begin() as conn:
                await conn.execute(self._insert, list(rows))
            return
        async with raw.transaction(self._engine) as tx:
            await tx.execute_params(self._raw, [params for params, _ in rows])

    async def landed(self, row: Any) -> bool:
        values: dict[str, Any] = row if self._raw is None else row[1]
        given = tuple(c for c in self._columns if values[c] is not None)
        if not given:  # nothing to tell it by: write it again
            return False
        find, compiled = self._find(given)
        values = {c: values[c] for c in given}
        if compiled is None:
            async with self._engine.connect() as conn:
                return (await conn.execute(find, values)).first() is not None
        async with raw.transaction(self._engine, reads=True) as tx:
            return bool(await tx.fetch(compiled, values))

    def _find(self, given: tuple[str, ...]) -> tuple[Select[Any], raw.Statement | None]:
        """The look-up of a row equal in every column: `=` for those `given` a value
        (which an index can serve, where PostgreSQL's IS NOT DISTINCT FROM cannot), IS
        NULL for the others; and its raw form."""
        known = self._finds.get(given)
        if known is None:
            table = self._table
            find = select(literal(1).label("found")).where(
                *(
                    table.c[c] == bindparam(c) if c in given else table.c[c].is_(None)
                    for c in self._columns
                )
            )
            find = find.limit(1)
            compiled = raw.Statement(find, self._engine.dialect) if self._raw else None
            known = self._finds[given] = (find, compiled)
        return known


class _ThreadWriter(_Writer):
    """One statement and one commit a batch on a thread of its own, with its own connection
    to the SQLite file. The rows go as one JSON array through each column type's bind
    processor, so a row written here is the row SQLAlchemy would write."""

    def __init__(
        self,
        engine: AsyncEngine,
        connector: Connector,
        table: Table,
        columns: Sequence[str],
        name: str,
    ) -> None:
        dialect = engine.dialect
        # SQLAlchemy fills Python-side defaults in while it executes; here nobody would.
        missing = [c.key for c in table.c if c.default is not None and c.key not in columns]
        if missing:
            raise ValueError(f"give the columns with Python-side defaults: {missing}")
        self._connector = connector
        self._columns = tuple(columns)
        self._processors = tuple(
            table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns
        )
        value: ColumnElement[Any] = literal_column("value")
        each = select(*(func.json_extract(value, literal(f"$[{i}]")) for i in range(len(columns))))
        self._insert = raw.Statement(
            insert(table).from_select(
                list(columns), each.select_from(func.json_each(bindparam("rows")))
            ),
            dialect,
        )
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"rows-behind-{name}")
        self._conn: sqlite3.Connection | None = None
        self._shut = False

    def prepare(self, row: Mapping[str, Any]) -> Any:
        values = [
            v if p is None else p(v)
            for v, p in zip(map(row.__getitem__, self._columns), self._processors, strict=True)
        ]
        return _ENCODE(values)

    async def write(self, rows: Sequence[Any]) -> None:
        params = self._insert.params({"rows": f"[{','.join(rows)}]"})
        await asyncio.get_running_loop().run_in_executor(self._thread, self._commit, params)
        if self._connector.checkpointer is not None:
            self._connector.checkpointer.after_commit()

    def _commit(self, params: tuple[Any, ...]) -> None:
        if self._conn is None:
            self._conn = self._connector.open_blocking()
        conn = self._conn
        try:
            conn.execute(self._insert.sql, params)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except sqlite3.Error:
                self._conn = None  # a connection that cannot roll back is not used again
                self._connector.close_blocking(conn)
            raise

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._connector.close_blocking(conn)

    async def close(self, wait: bool) -> None:
        if self._shut:
            return
        self._shut = True
        # After the write under way, if any: a write stalled on the disk or on a lock ends
        # on its own (committed, or failed after SQLite's busy timeout); shutdown goes on.
        closed = self._thread.submit(self._close)
        self._thread.shutdown(wait=False)
        if wait:
            await asyncio.wrap_future(closed)


__all__ = ["Backlogged", "RowsBehind"]
