"""Migrations and models on SQLite and on a real PostgreSQL; binding races on both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from campus.binding import BindingService, BindOutcome
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import WeChatAccount
from tests.support import DATA_KEY, id_tail, seed_campus


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    else:
        url = request.getfixturevalue("postgres_url")
    eng = create_engine(url)
    await upgrade(eng)
    yield eng
    await eng.dispose()


async def test_migrations_create_every_table(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    assert {"units", "places", "persons", "wechat_accounts", "audit_log"} <= tables
    await upgrade(engine)  # running again is a no-op


async def test_datetimes_come_back_aware_and_in_utc(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    shanghai = timezone(timedelta(hours=8))
    seen = datetime(2026, 11, 26, 8, 30, tzinfo=shanghai)
    async with sessions.begin() as s:
        s.add(WeChatAccount(openid="o_t", last_seen_at=seen))
    async with sessions() as s:
        row = (await s.execute(select(WeChatAccount))).scalar_one()
    assert row.last_seen_at == seen
    assert row.last_seen_at is not None and row.last_seen_at.tzinfo is not None
    assert row.last_seen_at.utcoffset() == UTC.utcoffset(None)


async def test_two_accounts_racing_for_one_person_one_wins(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    vault = DataVault.from_setting(DATA_KEY)
    await seed_campus(sessions, vault)
    service = BindingService(sessions, vault, MemoryKV(), Keyspace("wxrace"), 5)
    results = await asyncio.gather(
        *(service.bind(f"o_racer{i}", "S001", id_tail("S001")) for i in range(5)),
        return_exceptions=True,
    )
    outcomes = [r.outcome for r in results if not isinstance(r, BaseException)]
    assert outcomes.count(BindOutcome.BOUND) == 1, results
    assert set(outcomes) <= {BindOutcome.BOUND, BindOutcome.PERSON_TAKEN}
    async with sessions() as s:
        bound = (
            (await s.execute(select(WeChatAccount).where(WeChatAccount.person_id.is_not(None))))
            .scalars()
            .all()
        )
    assert len(bound) == 1


async def test_migrations_match_the_models(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from storage.models import Base

    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == [], f"a model changed without a migration: {diff}"
