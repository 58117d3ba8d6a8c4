"""SQLite on the loop's thread: a writer waiting for the lock lets everything else run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

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


async def test_the_aiosqlite_thread_is_still_there_when_asked_for(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", sqlite_inloop=False)
    try:
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            assert not isinstance(raw.driver_connection, inloop.Connection)
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 10000
    finally:
        await engine.dispose()
