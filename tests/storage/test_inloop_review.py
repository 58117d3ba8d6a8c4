"""SQLite on the loop's thread against what the application does with it: streamed exports,
savepoints, executemany, pragmas, :memory:, interleaved writers, another process."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import inloop
from storage.engine import create_engine, session_factory

META = MetaData()
PARENT = Table("parent", META, Column("id", Integer, primary_key=True))
CHILD = Table(
    "child",
    META,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("parent.id")),
    Column("name", String(20), unique=True),
)


@pytest.fixture(params=[True, False], ids=["inloop", "thread"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    e = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", sqlite_inloop=request.param)
    async with e.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    yield e
    await e.dispose()


async def test_a_streamed_query_yields_every_row(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(CHILD), [{"parent_id": 1, "name": f"n{i}"} for i in range(250)])
    async with session_factory(engine)() as session:
        stmt = select(CHILD.c.name).order_by(CHILD.c.id).execution_options(yield_per=40)
        result = await session.stream(stmt)
        names = [name async for name in result.scalars()]
        assert names == [f"n{i}" for i in range(250)]
        # and by partitions, as the exporters read
        result = await session.stream(stmt)
        sizes = [len(part) async for part in result.partitions()]
        assert sum(sizes) == 250 and max(sizes) == 40


async def test_a_savepoint_rolls_back_alone(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        await session.execute(insert(CHILD).values(parent_id=1, name="kept"))
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await session.execute(insert(CHILD).values(parent_id=1, name="dup"))
                await session.execute(insert(CHILD).values(parent_id=1, name="dup"))
        async with session.begin_nested():
            await session.execute(insert(CHILD).values(parent_id=1, name="nested"))
        await session.commit()
    async with engine.connect() as conn:
        rows = (await conn.execute(select(CHILD.c.name).order_by(CHILD.c.id))).scalars().all()
    assert rows == ["kept", "nested"]


async def test_a_rolled_back_transaction_leaves_nothing(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as session:
        await session.execute(insert(CHILD).values(parent_id=1, name="gone"))
        async with session.begin_nested():
            await session.execute(insert(CHILD).values(parent_id=1, name="gone too"))
        await session.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(select(CHILD.c.name))).scalars().all() == []


async def test_executemany_takes_a_generator_and_foreign_keys_hold(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        cursor = driver.cursor()  # type: ignore[union-attr]
        if not isinstance(driver, inloop.Connection):
            cursor = await cursor  # aiosqlite's cursor() is awaited
        await cursor.executemany(
            "INSERT INTO child (parent_id, name) VALUES (?, ?)", ((1, f"g{i}") for i in range(5))
        )
        await driver.commit()  # type: ignore[union-attr]
    async with engine.begin() as conn:
        await conn.execute(insert(CHILD), [{"parent_id": 1, "name": f"m{i}"} for i in range(5)])
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM child"))).scalar() == 10
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
        with pytest.raises(IntegrityError):
            await conn.execute(insert(CHILD).values(parent_id=99, name="orphan"))


async def test_a_memory_database_is_one_database() -> None:
    for url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        e = create_engine(url)
        try:
            async with e.begin() as conn:
                await conn.run_sync(META.create_all)
                await conn.execute(insert(PARENT).values(id=7))
            async with e.connect() as conn:
                assert (await conn.execute(select(PARENT.c.id))).scalar() == 7
        finally:
            await e.dispose()


async def test_interleaved_writers_on_one_loop_all_land(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    holding = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with sessions() as session:
            await session.execute(insert(CHILD).values(parent_id=1, name="holder"))
            holding.set()
            await release.wait()  # holds SQLite's write lock across an await
            await session.commit()

    async def writer(i: int) -> None:
        async with sessions() as session:
            await session.execute(select(CHILD.c.id))  # reads first: no snapshot is kept
            await session.execute(insert(CHILD).values(parent_id=1, name=f"w{i}"))
            await session.commit()

    task = asyncio.create_task(holder())
    await holding.wait()
    writers = [asyncio.create_task(writer(i)) for i in range(5)]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in writers)
    release.set()
    await asyncio.wait_for(asyncio.gather(task, *writers), 10)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM child"))).scalar() == 6


async def test_a_cancelled_waiting_writer_leaves_the_pool_usable(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with engine.connect() as first:
        await first.execute(insert(CHILD).values(parent_id=1, name="first"))

        async def waiting() -> None:
            async with sessions() as session:
                await session.execute(insert(CHILD).values(parent_id=1, name="cancelled"))
                await session.commit()

        task = asyncio.create_task(waiting())
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await first.commit()
    for i in range(8):  # more than the pool holds
        async with sessions() as session:
            await session.execute(insert(CHILD).values(parent_id=1, name=f"after{i}"))
            await session.commit()
    async with engine.connect() as conn:
        names = set((await conn.execute(select(CHILD.c.name))).scalars())
    assert "cancelled" not in names and "first" in names and len(names) == 9


_OTHER_PROCESS = """
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO child (parent_id, name) VALUES (1, 'import')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
c.execute("COMMIT")
"""


async def test_a_writer_waits_for_an_import_in_another_process(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OTHER_PROCESS,
        f"{tmp_path}/db.sqlite",
        "0.5",
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"locked\n"
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        clock = asyncio.create_task(ticker())
        async with session_factory(engine)() as session:
            await session.execute(insert(CHILD).values(parent_id=1, name="serve"))
            await session.commit()
        clock.cancel()
        assert ticks > 5  # the loop ran while the write waited
    finally:
        await asyncio.wait_for(proc.wait(), 5)
    async with engine.connect() as conn:
        names = set((await conn.execute(select(CHILD.c.name))).scalars())
    assert names == {"import", "serve"}


async def test_a_stale_read_snapshot_that_writes_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLITE_BUSY_SNAPSHOT: no wait cures it; the caller hears of it (it would be retried
    as a whole transaction), the loop is not held for BUSY_LIMIT."""
    monkeypatch.setattr(inloop, "BUSY_LIMIT", 2.0)
    e = create_engine(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite")
    try:
        async with e.begin() as conn:
            await conn.run_sync(META.create_all)
            await conn.execute(insert(PARENT).values(id=1))
        async with e.connect() as reader:
            await reader.exec_driver_sql("BEGIN")
            await reader.execute(select(PARENT.c.id))  # a snapshot is taken
            async with e.begin() as other:
                await other.execute(insert(CHILD).values(parent_id=1, name="other"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(OperationalError):
                await reader.execute(insert(CHILD).values(parent_id=1, name="stale"))
            assert loop.time() - started < 1.0
            await reader.rollback()
    finally:
        await e.dispose()


def test_busy_codes() -> None:
    def err(code: int | None, message: str = "database is locked") -> sqlite3.OperationalError:
        exc = sqlite3.OperationalError(message)
        if code is not None:
            exc.sqlite_errorcode = code
        return exc

    assert inloop._busy(err(5)) and inloop._busy(err(261)) and inloop._busy(err(None))
    assert not inloop._busy(err(517)) and not inloop._busy(err(1, "no such table"))
