"""storage/behind.py: rows queued now are committed soon, as SQLAlchemy would write them, and
kept through a locked or failing database; a refused row is dropped alone; a stalled
SQLite write holds up the writer's thread, never the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import ROWS_BEHIND_DROPPED
from storage import behind
from storage.behind import Backlogged, RowsBehind
from storage.engine import create_engine
from tests.storage.tables import COLUMNS, META, PARENT, ROWS, row


@pytest.fixture(params=["file", "memory", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        e = create_engine(request.getfixturevalue("postgres_url"))
    elif request.param == "memory":
        e = create_engine("sqlite+aiosqlite:///:memory:")
    else:
        e = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    async with e.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    yield e
    await e.dispose()


@pytest.fixture
async def sqlite_file(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Path]]:
    path = tmp_path / "db.sqlite"
    e = create_engine(f"sqlite+aiosqlite:///{path}")
    async with e.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    yield e, path
    await e.dispose()


async def stored(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        got = await conn.execute(select(ROWS).order_by(ROWS.c.id))
        return [tuple(r) for r in got.all()]


def locker(path: Path) -> sqlite3.Connection:
    """Another connection, holding SQLite's write lock until it rolls back."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_rows_put_are_committed_as_sqlalchemy_writes_them(engine: AsyncEngine) -> None:
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    rows.put([row(1), row(2, name=None, day=None, flag=None)])
    rows.put([row(3)])
    await rows.flushed()
    at = datetime(2026, 11, 26, 0, 30, 15, 123456, tzinfo=UTC)  # 08:30:15 in UTC+8
    assert await stored(engine) == [
        (1, 1, "n1", at, date(2026, 11, 26), False, 1),
        (2, 1, None, at, None, None, 1),
        (3, 1, "n3", at, date(2026, 11, 26), False, 1),
    ]
    assert rows.waiting == 0
    await rows.close()


async def test_a_refused_row_is_dropped_alone_and_counted(engine: AsyncEngine) -> None:
    dropped = ROWS_BEHIND_DROPPED.labels("refused")._value.get()
    rows = RowsBehind(engine, ROWS, COLUMNS, name="refused")
    # parent 99 does not exist: the foreign key refuses that row, and only that row.
    rows.put([row(1), row(2), row(3, parent_id=99), row(4), row(5)])
    await rows.flushed()
    assert [r[2] for r in await stored(engine)] == ["n1", "n2", "n4", "n5"]
    assert ROWS_BEHIND_DROPPED.labels("refused")._value.get() == dropped + 1
    await rows.close()


def failing(
    times: int, call: Callable[[Any], Awaitable[Any]]
) -> tuple[Callable[[Any], Awaitable[Any]], list[int]]:
    """`call`, failing its first `times` calls as a lost connection does; and [fails left]."""
    left = [times]

    async def flaky(arg: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise OSError("connection lost")
        return await call(arg)

    return flaky, left


async def test_a_failing_database_keeps_the_rows_and_writes_each_once(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(behind, "RETRY_FIRST", 0.01)
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    flaky, failures = failing(3, rows._writer.write)
    monkeypatch.setattr(rows._writer, "write", flaky)
    rows.put([row(1), row(2)])
    rows.put([row(3)])
    await asyncio.wait_for(rows.flushed(), 5)
    assert failures == [0]
    assert [r[2] for r in await stored(engine)] == ["n1", "n2", "n3"]
    await rows.close()


def name_of(item: Any) -> Any:
    """A queued row's `name`, however the writer prepared it."""
    return (item[1] if isinstance(item, tuple) else item)["name"]


def losing_a_commit(
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    starting_with: str | None = None,
) -> tuple[RowsBehind, list[int]]:
    """Rows behind whose first write (of a batch starting with the row named
    `starting_with`, if given) commits, then loses its answer; and [writes yet to lose]."""
    if request.node.callspec.params["engine"] == "file":
        pytest.skip("on a SQLite file the writer's commit is local: never made unbeknown")
    monkeypatch.setattr(behind, "RETRY_FIRST", 0.01)
    # The database numbers the rows, as it does access records: nothing else would
    # refuse a batch written twice.
    rows = RowsBehind(engine, ROWS, COLUMNS[1:], name="t")
    real, lost = rows._writer.write, [1]

    async def commit_then_drop(batch: Any) -> None:
        await real(batch)
        if lost[0] and starting_with in (None, name_of(batch[0])):
            lost[0] -= 1  # committed; the connection drops before the answer arrives
            raise ConnectionResetError("connection lost")

    monkeypatch.setattr(rows._writer, "write", commit_then_drop)
    return rows, lost


async def test_a_commit_whose_answer_was_lost_is_not_written_again(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    rows, lost = losing_a_commit(engine, monkeypatch, request)
    rows.put([row(1, name=None, flag=None), row(2)])
    await asyncio.wait_for(rows.flushed(), 5)
    rows.put([row(3)])
    await asyncio.wait_for(rows.flushed(), 5)
    assert lost == [0]
    assert [r[2] for r in await stored(engine)] == [None, "n2", "n3"]
    await rows.close()


async def test_a_lost_commit_after_a_refused_row_is_found_too(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # The batch is halved to find the refused row; the half after it loses its answer.
    rows, lost = losing_a_commit(engine, monkeypatch, request, starting_with="n3")
    rows.put([row(1), row(2, parent_id=99), row(3), row(4)])
    await asyncio.wait_for(rows.flushed(), 5)
    assert lost == [0]
    assert [r[2] for r in await stored(engine)] == ["n1", "n3", "n4"]
    await rows.close()


async def test_a_failed_write_not_committed_is_written_once_whatever_the_look_up_meets(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(behind, "RETRY_FIRST", 0.01)
    rows = RowsBehind(engine, ROWS, COLUMNS[1:], name="t")
    flaky, failures = failing(2, rows._writer.write)
    # The database is still down when the writer first looks.
    landed, down = failing(1, rows._writer.landed)
    # Already there: a row equal to the batch's first but for the name the batch leaves
    # empty, which the look-up must not take for it.
    rows.put([row(1)])
    await asyncio.wait_for(rows.flushed(), 5)
    monkeypatch.setattr(rows._writer, "write", flaky)
    monkeypatch.setattr(rows._writer, "landed", landed)
    rows.put([row(1, name=None)])
    await asyncio.wait_for(rows.flushed(), 5)
    assert (failures, down) == ([0], [0])
    assert [r[2] for r in await stored(engine)] == ["n1", None]
    await rows.close()


async def test_a_locked_sqlite_file_holds_the_writer_not_the_event_loop(
    sqlite_file: tuple[AsyncEngine, Path],
) -> None:
    engine, path = sqlite_file
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    lock = locker(path)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        rows.put([row(1)])
        await asyncio.sleep(0.3)
        # The writer waits on SQLite's lock in its thread; the loop kept running meanwhile.
        assert rows.waiting == 1 and ticks >= 20
        assert await stored(engine) == []
        lock.rollback()
        await asyncio.wait_for(rows.flushed(), 5)
        assert [r[2] for r in await stored(engine)] == ["n1"]
    finally:
        ticking.cancel()
        lock.close()
        await rows.close()


async def test_past_its_backlog_callers_wait_for_room_then_give_up(
    sqlite_file: tuple[AsyncEngine, Path],
) -> None:
    engine, path = sqlite_file
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t", max_batch=2, backlog=3)
    lock = locker(path)
    try:
        rows.put([row(1), row(2), row(3)])
        assert rows.full(1) and not rows.full(0)
        with pytest.raises(Backlogged):
            await rows.room(1, timeout=0.2)
        for _ in range(20):  # a fraction of a millisecond is waited out, not spun (uvloop)
            with pytest.raises(Backlogged):
                await rows.room(1, timeout=0.0002)
        assert len(rows._waiters) <= 21
        lock.rollback()
        await asyncio.wait_for(rows.room(1, timeout=5), 6)
        rows.put([row(4)])
        await rows.flushed()
        assert [r[2] for r in await stored(engine)] == ["n1", "n2", "n3", "n4"]
    finally:
        lock.close()
        await rows.close()


async def test_close_commits_what_is_queued_and_takes_no_more(
    sqlite_file: tuple[AsyncEngine, Path],
) -> None:
    engine, path = sqlite_file
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    lock = locker(path)
    rows.put([row(i) for i in range(1, 101)])
    closing = asyncio.create_task(rows.close())
    await asyncio.sleep(0.1)
    assert not closing.done()  # still waiting for the lock, with the rows
    lock.rollback()
    lock.close()
    await asyncio.wait_for(closing, 5)
    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(ROWS)) == 100
    with pytest.raises(RuntimeError):
        rows.put([row(101)])


async def test_close_gives_up_after_its_timeout_and_says_how_many_rows(
    sqlite_file: tuple[AsyncEngine, Path], caplog: pytest.LogCaptureFixture
) -> None:
    engine, path = sqlite_file
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    lock = locker(path)
    try:
        rows.put([row(1, name="张三"), row(2)])
        await rows.close(timeout=0.2)
    finally:
        lock.rollback()
        lock.close()
    assert "t: 2 rows not known to be written within the 0 s given at shutdown" in caplog.text
    assert "张三" not in caplog.text


async def test_a_row_that_cannot_be_written_fails_its_caller_and_nothing_of_the_call_is_queued(
    engine: AsyncEngine,
) -> None:
    rows = RowsBehind(engine, ROWS, COLUMNS, name="t")
    naive = datetime(2026, 11, 26, 8, 30)  # UTCDateTime refuses a time without its zone
    with pytest.raises(ValueError):
        rows.put([row(1), row(2, at=naive)])
    missing = row(3)
    del missing["day"]
    with pytest.raises(KeyError):
        rows.put([missing])
    assert rows.waiting == 0
    rows.put([row(4)])
    await rows.flushed()
    assert [r[2] for r in await stored(engine)] == ["n4"]
    await rows.close()
    await rows.close()  # once is enough; twice is harmless


async def test_a_column_with_a_python_side_default_must_be_given(engine: AsyncEngine) -> None:
    # SQLAlchemy fills `live` in when it executes; a writer of its own would leave it NULL.
    with pytest.raises(ValueError, match="live"):
        RowsBehind(engine, ROWS, COLUMNS[:-1], name="t")
