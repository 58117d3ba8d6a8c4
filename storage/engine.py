"""Engine and session factory: SQLite (WAL, foreign keys) by default, PostgreSQL via asyncpg."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event, make_url, text
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine.interfaces import DBAPIConnection, ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from storage import inloop


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets readers run while one writer commits; busy_timeout makes writers queue
    # instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    if not isinstance(getattr(dbapi_conn, "driver_connection", None), inloop.Connection):
        cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


_WRITE_LOCKS: WeakKeyDictionary[Any, asyncio.Lock] = WeakKeyDictionary()


def write_lock(
    sessions: async_sessionmaker[AsyncSession] | AsyncEngine,
) -> AbstractAsyncContextManager[Any]:
    """SQLite has one writer: writers of this process queue here, not in SQLite's busy
    handler (which sleeps 1, 2, 5, 10 … ms between tries). PostgreSQL needs no such lock."""
    bind = sessions if isinstance(sessions, AsyncEngine) else sessions.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return contextlib.nullcontext()
    lock = _WRITE_LOCKS.get(bind.sync_engine)
    if lock is None:
        lock = _WRITE_LOCKS[bind.sync_engine] = asyncio.Lock()
    return lock


_SQLITE_FILES: WeakKeyDictionary[Any, inloop.Connector] = WeakKeyDictionary()


def sqlite_file(engine: AsyncEngine) -> inloop.Connector | None:
    """The connector of an engine on a SQLite file whose statements run on the loop
    (storage/inloop.py): it opens plain connections to the file for a thread of their own."""
    return _SQLITE_FILES.get(engine.sync_engine)


def _in_memory(database: str | None, query: Any) -> bool:
    return database in (None, "", ":memory:") or query.get("mode") == "memory"


def create_engine(url: str, *, sqlite_inloop: bool = True, **kwargs: Any) -> AsyncEngine:
    """The engine for `url`. SQLite statements run on the event loop's thread (see
    storage/inloop.py) unless `sqlite_inloop` is off (then aiosqlite's worker thread)."""
    # Statement parameters are personal data (names, ciphertexts, openids): keep them out of
    # exception texts, and so out of logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        sqlite_url = make_url(url)
        connector = None
        if sqlite_inloop and "async_creator" not in kwargs:
            args, params = SQLiteDialect_aiosqlite().create_connect_args(sqlite_url)
            connector = kwargs["async_creator"] = inloop.connector(args, params)
        if "poolclass" not in kwargs and not _in_memory(sqlite_url.database, sqlite_url.query):
            # Each SQLite connection has its own page cache, and a write through any other
            # connection empties it at its next transaction. Handing out the connection used
            # last (usually the one that wrote) keeps its cache: guard scans re-read about 2.8
            # pages per scan from the file with the pool's default first-in-first-out order,
            # 0.4 with this (strace, bench/run_verify.py). In-memory databases use one static
            # connection, which has no such option.
            kwargs.setdefault("pool_use_lifo", True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if connector is not None and not connector.in_memory:
            _SQLITE_FILES[engine.sync_engine] = connector
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 1800)
    # A database that accepts connections but does not answer must become an error soon
    # enough for the polite "try again" reply, not a request hanging for asyncpg's 60 s.
    kwargs.setdefault("pool_timeout", 10)
    kwargs.setdefault("connect_args", {"timeout": 5})
    engine = create_async_engine(url, **kwargs)
    event.listen(engine.sync_engine, "handle_error", _scrub_details)
    return engine


def _scrub_details(context: ExceptionContext) -> None:
    """PostgreSQL's DETAIL repeats the values at fault (a duplicate key: an openid, a person
    number), and asyncpg's exception prints it: personal data, kept out of exception texts and
    so out of logged tracebacks, as `hide_parameters` keeps the parameters out."""
    exc: BaseException | None = context.original_exception
    for _ in range(5):  # the driver's exception is one or two causes down
        if exc is None:
            return
        if getattr(exc, "detail", None):
            with contextlib.suppress(AttributeError):
                exc.detail = None  # type: ignore[attr-defined]
        exc = exc.__cause__ or exc.__context__


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> bool:
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
