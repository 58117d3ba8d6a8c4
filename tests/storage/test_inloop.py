"""SQLite on the loop's thread: a writer waiting for the lock lets everything else run."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.util import greenlet_spawn

from storage import inloop
from storage.engine import create_engine


async def test_a_second_writer_waits_without_blocking_the_loop(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    clock = asyncio.create_task(ticker())
    try:
        async with engine.connect() as first:
            await first.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock
            second_done = asyncio.Event()

            async def second() -> None:
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t VALUES (2)"))
                second_done.set()

            waiting = asyncio.create_task(second())
            before = ticks
            await asyncio.sleep(0.2)
            assert not second_done.is_set()  # still waiting for the lock…
            assert ticks - before >= 10  # …while the loop kept running
            await first.commit()
        await asyncio.wait_for(waiting, 5)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT x FROM t ORDER BY x"))).scalars().all() == [
                1,
                2,
            ]
    finally:
        clock.cancel()
        await engine.dispose()


async def test_a_writer_gives_up_after_the_busy_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inloop, "BUSY_LIMIT", 0.1)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    try:
        async with engine.connect() as first:
            await first.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(OperationalError, match="locked"):
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t VALUES (2)"))
            await first.commit()
    finally:
        await engine.dispose()


async def test_a_busy_statement_is_retried_often_at_first_and_seldom_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A lock held for milliseconds (the WAL restart) costs the batch waiting on it about
    that, not the next power of two; a lock held for seconds is polled every 50 ms, and the
    statement gives up after BUSY_LIMIT seconds by the clock."""
    now = 0.0
    sleeps: list[float] = []

    async def sleep(delay: float) -> None:
        nonlocal now
        sleeps.append(delay)
        now += delay

    monkeypatch.setattr(inloop, "_clock", lambda: now)
    monkeypatch.setattr(inloop, "_sleep", sleep)
    tries = 0

    def locked_for(n: int) -> str:
        nonlocal tries
        tries += 1
        if tries <= n:
            raise sqlite3.OperationalError("database is locked")
        return "written"

    assert await inloop.patiently(locked_for, 10) == "written"
    assert sleeps == [0.001] + [0.002] * 9  # 19 ms asleep; doubling: 1+2+4+…+32+4×50 = 263
    assert now == pytest.approx(0.019)

    sleeps.clear()
    tries, now = 0, 0.0
    assert await inloop.patiently(locked_for, 150) == "written"
    assert len(sleeps) == 150
    assert all(d >= 0.002 for d in sleeps[1:])
    # Past 20 ms waited, each sleep is a tenth of the wait so far, up to 50 ms.
    for i, delay in enumerate(sleeps[1:], start=1):
        assert delay == pytest.approx(min(max(0.002, sum(sleeps[:i]) / 10), 0.05))
    assert sleeps[-1] == 0.05 and sleeps.count(0.05) > 100

    tries, now = 0, 0.0
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        await inloop.patiently(locked_for, 10_000)
    assert inloop.BUSY_LIMIT <= now < inloop.BUSY_LIMIT + 0.05


async def test_a_busy_wait_is_counted_by_the_clock_not_by_the_sleeps_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a busy loop a 1 ms sleep may last 10: the limit is of time waited."""
    now = 0.0

    async def slow_sleep(delay: float) -> None:
        nonlocal now
        now += delay + 0.01  # the loop came back late

    monkeypatch.setattr(inloop, "_clock", lambda: now)
    monkeypatch.setattr(inloop, "_sleep", slow_sleep)
    monkeypatch.setattr(inloop, "BUSY_LIMIT", 1.0)

    def locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError):
        await inloop.patiently(locked)
    assert 1.0 <= now < 1.1


async def test_the_aiosqlite_thread_is_still_there_when_asked_for(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", sqlite_inloop=False)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not isinstance(raw.driver_connection, inloop.Connection)
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10000
    finally:
        await engine.dispose()


async def test_the_wal_is_checkpointed_off_the_loop_and_stays_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connections never checkpoint (a checkpoint syncs the file); a worker thread
    does, so the WAL is reused instead of growing with every write."""
    monkeypatch.setattr(inloop, "CHECKPOINT_EVERY", 0.05)
    monkeypatch.setattr(inloop, "WAL_RESTART_FRAMES", 1000)
    path = tmp_path / "db.sqlite"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x BLOB)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar() == 0
            raw = await conn.get_raw_connection()
            checkpointer = raw.driver_connection._checkpointer  # type: ignore[union-attr]
        biggest = 0
        for _round in range(10):  # 10 × 2 MB written, in 500 commits each
            for _ in range(500):
                async with engine.begin() as conn:
                    await conn.execute(text("INSERT INTO t VALUES (randomblob(4000))"))
            await asyncio.sleep(0.1)  # the worker thread's checkpoint runs meanwhile
            biggest = max(biggest, await asyncio.to_thread(os.path.getsize, f"{path}-wal"))
        assert checkpointer.done >= 3
        # 20 MB of pages went through the WAL. Restarted past WAL_RESTART_FRAMES (4 MB here)
        # it stays within a few rounds' worth however slow the machine; never restarted, it
        # passes 50 MB (passive checkpoints alone never catch up with steady writes).
        assert biggest < 20_000_000
    finally:
        await engine.dispose()


async def test_the_database_file_holds_everything_once_the_engine_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint connection closes with the loop's last, so the last close of all folds
    the WAL into the file, as SQLite does: a copy of the file alone (a backup after shutdown)
    is complete."""
    monkeypatch.setattr(inloop, "CHECKPOINT_EVERY", 0.0)
    path = tmp_path / "db.sqlite"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    for i in range(50):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": i})
        await asyncio.sleep(0.001)  # checkpoints run meanwhile
    await engine.dispose()
    await asyncio.sleep(0.1)
    assert not await asyncio.to_thread(os.path.exists, f"{path}-wal")
    copy = tmp_path / "copy.sqlite"
    await asyncio.to_thread(copy.write_bytes, await asyncio.to_thread(path.read_bytes))
    reader = create_engine(f"sqlite+aiosqlite:///{copy}")
    try:
        async with reader.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 50
    finally:
        await reader.dispose()


async def test_checkpoints_share_one_connection_that_closes_with_the_loops_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection per checkpoint would read the whole schema each time; one kept open must
    not outlive the service's own connections (nor be opened again by a late checkpoint)."""
    monkeypatch.setattr(inloop, "CHECKPOINT_EVERY", 0.0)
    opened_off_loop = []
    connect = sqlite3.connect

    def counting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread() is not threading.main_thread():
            opened_off_loop.append(args)  # the checkpoint thread's
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", counting)
    path = tmp_path / "db.sqlite"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
        raw = await conn.get_raw_connection()
        checkpointer = raw.driver_connection._checkpointer  # type: ignore[union-attr]
    for i in range(30):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (:x)"), {"x": i})
        await asyncio.sleep(0.005)  # the checkpoint runs meanwhile
    assert checkpointer.done >= 3
    assert len(opened_off_loop) == 1
    await engine.dispose()
    assert not await asyncio.to_thread(os.path.exists, f"{path}-wal")
    # A checkpoint asked for before the close and run after it opens nothing.
    await asyncio.to_thread(checkpointer.run)
    assert len(opened_off_loop) == 1
    assert not await asyncio.to_thread(os.path.exists, f"{path}-wal")


def _wal_database(path: Path) -> None:
    """A WAL-mode file with a table, made without an engine, so that no checkpoint of its
    own is still on its way to a worker thread when a test starts."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (x INTEGER)")


async def test_a_leaked_last_connection_collected_inside_a_checkpoint_does_not_hang_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The garbage collector runs in whichever thread allocates: in the checkpoint's own, it
    may close the loop's last connection (a leaked one) while the checkpoint holds its lock.
    The checkpoint must end, and close its connection as the last one."""
    path = tmp_path / "db.sqlite"
    _wal_database(path)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")  # reads only: no checkpoint yet
    leaked = await engine.connect()
    await leaked.execute(text("SELECT count(*) FROM t"))
    checkpointer = (await leaked.get_raw_connection()).driver_connection._checkpointer  # type: ignore[union-attr]
    connect = sqlite3.connect

    def collecting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread() is not threading.main_thread():
            gc.collect()  # as an allocation here might set off
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", collecting)
    gc.disable()
    try:
        cycle: dict[str, Any] = {"conn": leaked}
        cycle["self"] = cycle  # only the collector can free it
        del leaked, cycle
        await engine.dispose()  # the pool's idle connections; the leaked one stays open
        worker = threading.Thread(target=checkpointer.run, daemon=True)
        worker.start()
        await asyncio.to_thread(worker.join, 10)
        assert not worker.is_alive()
    finally:
        gc.enable()
    assert not await asyncio.to_thread(os.path.exists, f"{path}-wal")


async def test_the_loops_last_close_does_not_wait_for_a_checkpoint_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last connection may close on the loop's thread while serving (a cancelled
    statement drops its connection): that must not hold the loop for a checkpoint's length.
    The checkpoint closes its own connection when it ends."""
    path = tmp_path / "db.sqlite"
    _wal_database(path)
    checkpointer = inloop.Checkpointer((str(path),), {})
    checkpointer.opened()  # one connection of the loop's
    under_way, finish = threading.Event(), threading.Event()
    connect = sqlite3.connect

    def slow(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread() is not threading.main_thread():
            under_way.set()
            finish.wait(10)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", slow)
    worker = threading.Thread(target=checkpointer.run, daemon=True)
    worker.start()
    assert await asyncio.to_thread(under_way.wait, 10)
    checkpointer.closed()  # the loop's last, during the checkpoint
    assert worker.is_alive()  # closed() came back without waiting for it
    finish.set()
    await asyncio.to_thread(worker.join, 10)
    assert not worker.is_alive()
    assert not await asyncio.to_thread(os.path.exists, f"{path}-wal")


async def test_the_connection_used_last_is_handed_out_next(tmp_path: Path) -> None:
    """Its page cache is warm: a write through another connection would have emptied it."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    try:
        first, second = await engine.raw_connection(), await engine.raw_connection()
        reader, writer = first.driver_connection, second.driver_connection
        assert reader is not writer
        await greenlet_spawn(first.close)
        await greenlet_spawn(second.close)  # returned last, as a batch's writer would be
        again = await engine.raw_connection()
        assert again.driver_connection is writer
        await greenlet_spawn(again.close)
    finally:
        await engine.dispose()


async def test_an_in_memory_database_keeps_its_single_connection() -> None:
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT x FROM t"))).scalar_one() == 1
    finally:
        await engine.dispose()
