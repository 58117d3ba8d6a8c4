"""storage/raw.py: statements on the driver's connection write and read what SQLAlchemy
would, in one transaction that commits or rolls back whole, on every driver the app uses."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import raw
from storage.batching import bound_list, one_of
from storage.engine import create_engine
from tests.storage.tables import COLUMNS, META, PARENT, ROWS, row


@pytest.fixture(params=["inloop", "thread", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "postgresql":
        e = create_engine(request.getfixturevalue("postgres_url"))
    else:
        e = create_engine(
            f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", sqlite_inloop=request.param == "inloop"
        )
    async with e.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    yield e
    await e.dispose()


async def test_rows_written_raw_read_back_through_sqlalchemy_as_given(engine: AsyncEngine) -> None:
    stmt = raw.Statement(insert(ROWS), engine.dialect, columns=COLUMNS)
    async with raw.transaction(engine) as tx:
        await tx.execute_many(stmt, [row(1), row(2)])
    async with engine.connect() as conn:
        got = (await conn.execute(select(ROWS).order_by(ROWS.c.id))).all()
    at = datetime(2026, 11, 26, 0, 30, 15, 123456, tzinfo=UTC)  # 08:30:15 in UTC+8
    assert [tuple(r) for r in got] == [
        (1, 1, "n1", at, date(2026, 11, 26), False, 1),
        (2, 1, "n2", at, date(2026, 11, 26), True, 1),
    ]


async def test_rows_written_by_sqlalchemy_read_raw_as_sqlalchemy_reads_them(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(1), row(2, at=None, day=None, flag=None)])
    read = select(ROWS.c.id, ROWS.c.at, ROWS.c.day, ROWS.c.flag, ROWS.c.live).order_by(ROWS.c.id)
    async with engine.connect() as conn:
        expected = [tuple(r) for r in (await conn.execute(read)).all()]
    async with raw.transaction(engine) as tx:
        got = await tx.fetch(raw.Statement(read, engine.dialect), {})
    assert got == expected
    assert got[0][1] == datetime(2026, 11, 26, 0, 30, 15, 123456, tzinfo=UTC)
    assert got[0][3] is False and got[1][1:4] == (None, None, None) and got[0][4] == 1


async def test_parameters_by_name_literals_and_lists(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(i) for i in range(1, 6)])
        await conn.execute(update(ROWS).where(ROWS.c.id == 5).values(live=0))
    name = engine.dialect.name
    # `live == 1` is a literal of the statement: it binds itself; `ids` is one list parameter.
    stmt = (
        select(ROWS.c.id)
        .where(one_of(ROWS.c.id, "ids", name), ROWS.c.live == 1, ROWS.c.name != bindparam("not"))
        .order_by(ROWS.c.id)
    )
    async with raw.transaction(engine) as tx:
        got = await tx.fetch(
            raw.Statement(stmt, engine.dialect),
            {"ids": bound_list([1, 2, 3, 5], name), "not": "n2"},
        )
    assert got == [(1,), (3,)]


async def test_execute_counts_the_rows_it_changed(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(i) for i in range(1, 4)])
    stmt = raw.Statement(
        update(ROWS).where(ROWS.c.id <= bindparam("upto")).values(name="x"), engine.dialect
    )
    async with raw.transaction(engine) as tx:
        assert await tx.execute(stmt, {"upto": 2}) == 2
        assert await tx.execute(stmt, {"upto": 0}) == 0


async def test_a_failure_rolls_back_the_whole_transaction(engine: AsyncEngine) -> None:
    stmt = raw.Statement(insert(ROWS), engine.dialect, columns=COLUMNS)
    with pytest.raises(Exception) as failed:
        async with raw.transaction(engine) as tx:
            await tx.execute_many(stmt, [row(1)])
            await tx.execute_many(stmt, [row(2, parent_id=99)])  # no such parent
    assert "rows" in str(failed.value) or "FOREIGN KEY" in str(failed.value)
    assert getattr(failed.value, "detail", None) is None  # the values at fault stay out
    with pytest.raises(RuntimeError):
        async with raw.transaction(engine) as tx:
            await tx.execute_many(stmt, [row(3)])
            raise RuntimeError("the caller's own fault")
    async with engine.connect() as conn:
        assert (await conn.execute(select(ROWS.c.id))).all() == []
    # The connection went back to the pool clean: SQLAlchemy's next transaction works.
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(4)])
    async with raw.transaction(engine) as tx:
        assert await tx.fetch(raw.Statement(select(ROWS.c.id), engine.dialect), {}) == [(4,)]


async def test_an_early_return_commits_what_was_written(engine: AsyncEngine) -> None:
    stmt = raw.Statement(insert(ROWS), engine.dialect, columns=COLUMNS)

    async def write_then_return() -> str:
        async with raw.transaction(engine) as tx:
            await tx.execute_many(stmt, [row(1)])
            return "done"

    assert await write_then_return() == "done"
    async with engine.connect() as conn:
        assert (await conn.execute(select(ROWS.c.id))).scalars().all() == [1]


def test_a_python_side_default_must_be_given() -> None:
    # SQLAlchemy computes `default=1` while it executes; a raw insert would leave it out.
    dialect = create_engine("sqlite+aiosqlite:///:memory:").dialect
    with pytest.raises(ValueError, match="live"):
        raw.Statement(insert(ROWS), dialect, columns=COLUMNS[:-1])


async def test_rows_are_named_by_their_columns(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(7)])
    stmt = select(ROWS.c.id, ROWS.c.name.label("label"))
    async with raw.transaction(engine) as tx:
        (got,) = await tx.fetch(raw.Statement(stmt, engine.dialect), {})
    assert (got.id, got.label) == (7, "n7") and got == (7, "n7")


def test_statements_it_could_not_run_as_written_are_refused() -> None:
    dialect = create_engine("sqlite+aiosqlite:///:memory:").dialect
    with pytest.raises(ValueError, match="per execution"):
        raw.Statement(select(ROWS.c.id).where(ROWS.c.id.in_([1, 2])), dialect)
    with pytest.raises(ValueError, match="label every column"):
        raw.Statement(select(func.count()).select_from(ROWS), dialect)
    with pytest.raises(ValueError, match="label every column"):
        raw.Statement(select(ROWS.c.id, ROWS.c.name.label("id")), dialect)


async def _still_usable(engine: AsyncEngine, url: str) -> None:
    """No connection left out of the pool, and a commit on its one connection is seen from
    another (not a savepoint of a transaction left open)."""
    assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await conn.execute(insert(ROWS), [row(1)])
    other = create_engine(url)
    try:
        async with other.connect() as conn:
            assert (await conn.execute(select(ROWS.c.id))).scalars().all() == [1]
    finally:
        await other.dispose()
        await engine.dispose()


async def test_a_cancelled_begin_does_not_leave_the_connection_in_a_transaction(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while BEGIN is on its way: the connection must not go back to the pool
    inside that transaction, where every later commit would be a savepoint of it."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    begun = asyncio.Event()
    begin = raw._Asyncpg.begin

    async def announced(self: raw._Asyncpg) -> None:
        begun.set()
        await begin(self)

    monkeypatch.setattr(raw._Asyncpg, "begin", announced)

    async def work() -> None:
        async with raw.transaction(engine):
            pass

    task = asyncio.create_task(work())
    await begun.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _still_usable(engine, postgres_url)


async def test_a_rollback_cut_short_does_not_hand_on_a_broken_connection(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled in a statement, then again in the rollback: the next transaction on the
    pool's one connection still works."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    async with engine.begin() as conn:
        await conn.run_sync(META.create_all)
        await conn.execute(insert(PARENT), [{"id": 1}])
    stmt = raw.Statement(insert(ROWS), engine.dialect, columns=COLUMNS)
    slow = raw.Statement(select(func.pg_sleep(5).label("slept")), engine.dialect)
    rolling_back = asyncio.Event()
    rollback = raw._Asyncpg.rollback

    async def slow_rollback(self: raw._Asyncpg) -> None:
        rolling_back.set()
        await asyncio.sleep(0.2)
        await rollback(self)

    monkeypatch.setattr(raw._Asyncpg, "rollback", slow_rollback)
    started = asyncio.Event()

    async def work() -> None:
        async with raw.transaction(engine) as tx:
            await tx.execute_many(stmt, [row(1)])
            started.set()
            await tx.fetch(slow, {})

    task = asyncio.create_task(work())
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    await rolling_back.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _still_usable(engine, postgres_url)


async def test_a_commit_the_server_refuses_keeps_the_connection(postgres_url: str) -> None:
    """A deferred constraint fails at COMMIT: the error reaches the caller, nothing is
    written, and the connection (whose transaction the server ended) stays in the pool."""
    engine = create_engine(postgres_url, pool_size=1, max_overflow=0)
    async with engine.begin() as conn:
        await conn.execute(
            text("CREATE TABLE deferred (id int, UNIQUE (id) DEFERRABLE INITIALLY DEFERRED)")
        )
    deferred = Table("deferred", MetaData(), Column("id", Integer))
    stmt = raw.Statement(insert(deferred), engine.dialect, columns=("id",))
    pid = raw.Statement(select(func.pg_backend_pid().label("pid")), engine.dialect)
    async with raw.transaction(engine, reads=True) as tx:
        (before,) = await tx.fetch(pid, {})
    with pytest.raises(Exception, match=r"unique|duplicate"):
        async with raw.transaction(engine) as tx:
            await tx.execute_many(stmt, [{"id": 1}, {"id": 1}])
    async with raw.transaction(engine) as tx:
        (after,) = await tx.fetch(pid, {})
        await tx.execute_many(stmt, [{"id": 2}])
    assert after.pid == before.pid
    async with engine.connect() as conn:
        assert (await conn.execute(select(deferred.c.id))).scalars().all() == [2]
    await engine.dispose()


def test_only_the_app_drivers_are_supported() -> None:
    assert raw.supported(create_engine("sqlite+aiosqlite:///:memory:"))
    assert raw.supported(create_engine("postgresql+asyncpg://u@127.0.0.1/x"))
