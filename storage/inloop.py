"""SQLite on the event loop's own thread, behind SQLAlchemy's aiosqlite dialect.

aiosqlite runs every statement on a worker thread: the statement is queued, the thread wakes,
runs it, and hands the result back through `call_soon_threadsafe`. A statement on a warm
SQLite file takes microseconds, but under load each of those hand-offs waits for the GIL
(up to the interpreter's 5 ms switch interval while the event loop is busy), and a check-in
makes several. Profiles of the callback under load showed more time in those hand-offs than in
the rest of the message.

Here the DBAPI calls run inline: the "async" methods SQLAlchemy awaits return at once. What
must not block the loop is waiting for SQLite's write lock, so connections get
`busy_timeout=0` and a statement that finds the database busy is retried after an
asyncio sleep (every 2 ms at first, less often as the wait grows, up to `BUSY_LIMIT`
seconds in all), during which other messages run. Statements that scan many rows (the
nightly roll-over, a bulk import) do hold the loop for their duration: on SQLite the whole
service is one process anyway; PostgreSQL (asyncpg) is unaffected.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

BUSY_LIMIT = 10.0  # seconds a statement may wait for another writer, as busy_timeout did
BUSY_STEP = 0.002  # seconds between its first retries (see patiently)
CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints, at most (see Checkpointer)
WAL_RESTART_FRAMES = 4000  # a WAL this long (≈16 MB) is restarted, not only copied

log = logging.getLogger(__name__)

T = TypeVar("T")


def _busy(exc: sqlite3.OperationalError) -> bool:
    # SQLITE_BUSY (5), and its extended form for a database in recovery (261); not
    # SQLITE_BUSY_SNAPSHOT (517), which no wait would cure.
    return getattr(exc, "sqlite_errorcode", None) in (5, 261) or (
        getattr(exc, "sqlite_errorcode", None) is None and "database is locked" in str(exc)
    )


_clock = time.monotonic  # patiently's, apart for tests
_sleep = asyncio.sleep


async def patiently(call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, retried after a short asyncio sleep while SQLite's write lock is held
    elsewhere, for up to BUSY_LIMIT seconds of waiting.

    The sleeps stay short while the wait is. The lock is mostly held by the checkpointer's
    WAL restart, for a few milliseconds, while every scan in the batch waits: with sleeps
    doubling from 1 ms, such waits were measured at 31-40 ms (five failed tries) under the
    guard-scan benchmark, and 2-7 ms with these. After the first, a sleep lasts BUSY_STEP
    or a tenth of the time waited so far, whichever is longer, and at most 50 ms: a wait
    outlasts the lock by that much at most, and a long one (another process's bulk import)
    costs a retry every 50 ms. The time waited is the clock's, so a busy loop that makes
    each sleep run long does not stretch BUSY_LIMIT."""
    delay, started = 0.001, _clock()
    while True:
        try:
            return call(*args)
        except sqlite3.OperationalError as exc:
            waited = _clock() - started
            if not _busy(exc) or waited >= BUSY_LIMIT:
                raise
        await _sleep(delay)
        delay = min(max(BUSY_STEP, (_clock() - started) / 10), 0.05)


class _Inline:
    """What SQLAlchemy's isolation-level setter puts work on (aiosqlite's queue): run now."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class Cursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        await patiently(self._cursor.execute, sql, () if parameters is None else parameters)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Cursor:
        rows = list(parameters)  # retried whole if busy: nothing of it was written
        await patiently(self._cursor.executemany, sql, rows)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class Checkpointer:
    """Moves the write-ahead log into the database file, off the event loop's thread.

    Left to itself, SQLite checkpoints inside the commit that finds 1,000 pages in the WAL,
    and a checkpoint syncs the database file: on the loop's thread that holds every message
    for milliseconds (far more on a busy disk). The loop's connections have that turned off
    (`wal_autocheckpoint=0`); instead, after a commit and at most every CHECKPOINT_EVERY
    seconds, a PASSIVE checkpoint runs on a worker thread with a connection of its own. The
    sqlite3 module lets go of the GIL while SQLite works, and a passive checkpoint never
    blocks readers or the writer. A WAL past WAL_RESTART_FRAMES is restarted.

    The checkpoint connection stays open while other connections to the file are (the loop's,
    and the writer thread's of storage/behind.py): a new one would read the whole schema
    first (about two million instructions, once a second under writes). It closes with the
    last of them, so that the last close of all still folds the WAL into the file, as SQLite
    does when a database's last connection closes.
    """

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self._args, self._kwargs = args, kwargs
        self._next = 0.0
        self._running = False
        self._users = 0  # the other connections open now (the loop's, a writer thread's)
        self._count = threading.Lock()  # guards _users; never held while SQLite works
        self._work = threading.Lock()  # guards _conn and the checkpoint itself
        self._conn: sqlite3.Connection | None = None
        self.done = 0  # checkpoints run, for tests

    def opened(self) -> None:
        with self._count:
            self._users += 1

    def closed(self) -> None:
        """Another connection closed. Never waits: it may run on the loop's thread, or in the
        garbage collector inside `run` itself; a checkpoint under way closes at its end."""
        with self._count:
            self._users -= 1
            if self._users or not self._work.acquire(blocking=False):
                return
        try:
            self._close()
        finally:
            self._work.release()

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def after_commit(self) -> None:
        now = time.monotonic()
        if self._running or now < self._next:
            return
        self._running, self._next = True, now + CHECKPOINT_EVERY
        asyncio.get_running_loop().run_in_executor(None, self.run)

    def run(self) -> None:
        self._work.acquire()
        try:
            with self._count:
                if self._users == 0:
                    return  # closed since it was asked for: open nothing now
            try:
                if self._conn is None:
                    self._conn = sqlite3.connect(
                        *self._args, **{**self._kwargs, "check_same_thread": False}
                    )
                    self._conn.execute("PRAGMA busy_timeout=1000")
                _busy, frames, _copied = self._conn.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)"
                ).fetchone()
                if frames >= WAL_RESTART_FRAMES:
                    # Under steady writes a passive checkpoint never catches up and the WAL
                    # only grows. A restart waits for the writer, copies the rest, and has
                    # the next writer start the WAL afresh; the loop's writers wait in
                    # patiently meanwhile. A second passive checkpoint first copies what came
                    # in during the first, so the restart, with the writers held, has little
                    # left to copy and sync (4 ms instead of 7 under the guard-scan benchmark).
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error:
                self._close()  # the next checkpoint starts with a fresh connection
                raise
            self.done += 1
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._running = False
            # The last other connection may have closed meanwhile, leaving this one to us
            # (closed() does not wait). Decided under _count, so that no closed() is missed.
            with self._count:
                closing = self._users == 0
                if not closing:
                    self._work.release()
            if closing:
                try:
                    self._close()
                finally:
                    self._work.release()


class Connection:
    """The parts of aiosqlite.Connection that SQLAlchemy's adapter uses."""

    def __init__(
        self, connection: sqlite3.Connection, checkpointer: Checkpointer | None = None
    ) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection
        self._tx = _Inline()
        self._checkpointer = checkpointer

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself, for storage/raw.py's statements."""
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._conn.isolation_level = value  # type: ignore[assignment]

    def cursor(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        return await Cursor(self._conn.cursor()).execute(sql, parameters)

    async def commit(self) -> None:
        await patiently(self._conn.commit)
        if self._checkpointer is not None:
            self._checkpointer.after_commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            try:
                self._conn.close()
            finally:
                if self._checkpointer is not None:
                    self._checkpointer.closed()


class Connector:
    """The `async_creator` for create_async_engine, from the dialect's connect arguments;
    also opens, for a thread of the process's own (storage/behind.py), a plain connection to
    the same file with the same settings."""

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self._args, self._kwargs = tuple(args), dict(kwargs)
        target = str(args[0]) if args else str(kwargs.get("database", ""))
        self.in_memory = target in ("", ":memory:") or "mode=memory" in target
        self.checkpointer = None if self.in_memory else Checkpointer(args, kwargs)

    async def __call__(self) -> Connection:
        # check_same_thread off: the pool may close a connection from the GC's thread.
        connection = sqlite3.connect(*self._args, **{**self._kwargs, "check_same_thread": False})
        connection.execute("PRAGMA busy_timeout=0")  # waits happen in patiently, not here
        if self.checkpointer is not None:
            connection.execute("PRAGMA wal_autocheckpoint=0")  # see Checkpointer
            self.checkpointer.opened()
        return Connection(connection, self.checkpointer)

    def open_blocking(self) -> sqlite3.Connection:
        """A connection for a thread that may block: SQLite's own busy wait, the engine's
        settings (storage/engine.py), no automatic checkpoints (the Checkpointer's). Closed
        with `close_blocking`. Not for an in-memory database, which is the engine's alone."""
        if self.checkpointer is None:
            raise ValueError("an in-memory database has no second connection")
        connection = sqlite3.connect(*self._args, **{**self._kwargs, "check_same_thread": False})
        try:
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "foreign_keys=ON",
                "busy_timeout=10000",
                "wal_autocheckpoint=0",
                # An INSERT … SELECT from json_each (storage/behind.py) fills a temporary
                # table: in a file, that was an open, a write and an unlink a statement.
                "temp_store=MEMORY",
            ):
                connection.execute(f"PRAGMA {pragma}")
        except BaseException:
            connection.close()
            raise
        self.checkpointer.opened()
        return connection

    def close_blocking(self, connection: sqlite3.Connection) -> None:
        try:
            connection.close()
        finally:
            if self.checkpointer is not None:
                self.checkpointer.closed()


def connector(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Connector:
    """An `async_creator` for create_async_engine, from the dialect's connect arguments."""
    return Connector(args, kwargs)
