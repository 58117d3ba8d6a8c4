"""Several dispatchers on one PostgreSQL outbox (SKIP LOCKED); one on SQLite (the leader's)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import insert, select

from bot.clock import FrozenClock
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from bot.wechat.api import WeChatAPI
from bot.wechat.token import AccessTokenManager
from campus.notifications import Notifications, Push
from scheduler.dispatcher import DispatchConfig, OutboxDispatcher
from scheduler.runner import Scheduler, job_context
from simulator import SimulatorConfig, create_simulator_app
from simulator.clock import ManualClock
from simulator.keys import STATE
from simulator.state import SimulatorState
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import OutboxMessage, Person, Unit, WeChatAccount
from tests.scheduler.conftest import CUSTOM, NOON, SECRET, rig_settings
from tests.support import APPID, TOKEN

PEOPLE = 300


@pytest.fixture
async def emulated() -> AsyncIterator[tuple[SimulatorState, str]]:
    sim_app = create_simulator_app(
        SimulatorConfig(
            token=TOKEN,
            appid=APPID,
            secret=SECRET,
            aes_key=None,
            callback_url="http://127.0.0.1:9/wechat",
            personas_url=None,
        ),
        clock=ManualClock(NOON.timestamp()),
    )
    parent = web.Application()
    parent.add_subapp("/sim/", sim_app)
    server = TestServer(parent)
    await server.start_server()
    yield sim_app[STATE], str(server.make_url("/sim/api"))
    await server.close()


async def _campus(url: str, sim: SimulatorState) -> None:
    """PEOPLE persons, each bound and inside the 48-hour window, and a push for each."""
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    now = datetime.fromtimestamp(NOON.timestamp(), UTC)
    async with sessions.begin() as s:
        unit = Unit(code="ALL", name="Everyone")
        s.add(unit)
        await s.flush()
        await s.execute(
            insert(Person),
            [
                {
                    "person_no": f"P{i:05d}",
                    "name": f"Person {i}",
                    "category": "student",
                    "unit_id": unit.id,
                    "id_hash": f"h{i}",
                    "id_cipher": b"x",
                    "locale": "zh_CN",
                }
                for i in range(PEOPLE)
            ],
        )
        ids = (await s.execute(select(Person.id).order_by(Person.id))).scalars().all()
        await s.execute(
            insert(WeChatAccount),
            [
                {"openid": f"o_{pid}", "person_id": pid, "last_seen_at": now - timedelta(hours=1)}
                for pid in ids
            ],
        )
        await Notifications(sessions).enqueue_many(
            s, [Push(pid, "reminder", f"hello {pid}", f"r:{pid}") for pid in ids], now=now
        )
    for pid in ids:
        sim.users.add(f"o_{pid}", following=True).window.on_message(NOON.timestamp() - 3600)
    await engine.dispose()


@pytest.mark.postgres
async def test_two_dispatchers_share_the_outbox_and_send_nothing_twice(
    postgres_url: str, emulated: tuple[SimulatorState, str], tmp_path: Path
) -> None:
    sim, api_base = emulated
    await _campus(postgres_url, sim)
    sim.inject(latency_ms=3)  # enough for the two to interleave
    settings = rig_settings(tmp_path, api_base, database_url=postgres_url)
    kv = MemoryKV()  # the token, shared as through Redis
    clock = FrozenClock(NOON.timestamp())
    engines = [create_engine(postgres_url, pool_size=4) for _ in range(2)]  # two "processes"
    try:
        async with aiohttp.ClientSession() as http:
            tokens = AccessTokenManager(http, settings, kv, Keyspace(APPID), clock)
            api = WeChatAPI(http, settings, tokens)
            dispatchers = [
                OutboxDispatcher(
                    session_factory(engine),
                    api,
                    kv,
                    Keyspace(APPID),
                    clock,
                    DispatchConfig(concurrency=8),
                )
                for engine in engines
            ]
            handled = await asyncio.gather(*(d.run_until_idle() for d in dispatchers))
        assert sum(handled) == PEOPLE
        assert all(n > 0 for n in handled), handled  # both took a share
        async with session_factory(engines[0])() as s:
            states = Counter((await s.execute(select(OutboxMessage.state))).scalars())
            attempts = set((await s.execute(select(OutboxMessage.attempts))).scalars())
        assert states == {"sent": PEOPLE}
        assert attempts == {1}
    finally:
        for engine in engines:
            await engine.dispose()
    # WeChat's side: every person got exactly one message.
    assert sim.calls[CUSTOM] == PEOPLE
    per_user = Counter(e.openid for e in sim.log.all_entries() if e.message.via == "custom")
    assert len(per_user) == PEOPLE and set(per_user.values()) == {1}


async def test_on_sqlite_only_the_leader_dispatches(tmp_path: Path) -> None:
    settings = rig_settings(tmp_path, "http://127.0.0.1:9")
    engine = create_engine(settings.database_url)
    kv = MemoryKV()  # shared by both, as Redis would be
    try:
        schedulers = [
            Scheduler(job_context(settings, session_factory(engine), kv, FrozenClock()), api=None)  # type: ignore[arg-type]
            for _ in range(2)
        ]
        leader, follower = schedulers
        assert await leader.elector.tick() and not await follower.elector.tick()
        assert leader.dispatcher is not None and follower.dispatcher is not None
        assert leader.dispatcher._may_dispatch() and not follower.dispatcher._may_dispatch()
    finally:
        await engine.dispose()
