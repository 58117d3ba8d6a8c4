"""A rig for the dispatcher: the bot app and the emulated WeChat on two local servers.

The bot (SQLite file, in-memory state, a FrozenClock) calls the simulator's API; the simulator
(a ManualClock at the same instant) sends its TEMPLATESENDJOBFINISH reports to the bot's
callback. Tests move both clocks with `rig.advance`, never sleep for a timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import appkeys as K
from bot.app import create_app
from bot.clock import FrozenClock
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from bot.settings import Settings
from campus.notifications import Notifications, Schedule
from campus.quiet_hours import QuietHours
from scheduler.dispatcher import DispatchConfig, OutboxDispatcher
from simulator import SimulatorConfig, create_simulator_app
from simulator.clock import ManualClock
from simulator.keys import STATE
from simulator.state import SimulatorState
from storage.models import OutboxMessage, Person, WeChatAccount
from tests.support import (
    APPID,
    DATA_KEY,
    TOKEN,
    AppServer,
    port_of,
    reserved_socket,
    seed_campus,
)

SECRET = "rig-secret"
SHANGHAI = ZoneInfo("Asia/Shanghai")
# Noon on campus: outside quiet hours, so pushes are due at once unless a test says otherwise.
NOON = datetime(2026, 11, 26, 12, 0, tzinfo=SHANGHAI)
TEMPLATES = {"broadcast": "TPL_broadcast", "reminder": "TPL_reminder"}
CUSTOM = "/cgi-bin/message/custom/send"
TEMPLATE = "/cgi-bin/message/template/send"


@dataclass
class Rig:
    app: web.Application
    sim: SimulatorState
    clock: FrozenClock
    sim_clock: ManualClock
    persons: dict[str, int] = field(default_factory=dict)

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self.app[K.SESSIONS]

    @property
    def notifications(self) -> Notifications:
        return self.app[K.SERVICES]["notifications"]  # type: ignore[no-any-return]

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sim_clock.advance(seconds)

    def dispatcher(self, **config: Any) -> OutboxDispatcher:
        values: dict[str, Any] = {"template_ids": TEMPLATES, "concurrency": 8, **config}
        return OutboxDispatcher(
            self.sessions,
            self.app[K.API],
            self.app[K.KV_STORE],
            Keyspace(APPID),
            self.clock,
            DispatchConfig(**values),
            Schedule(QuietHours(), SHANGHAI),
            notifications=self.notifications,
        )

    async def bind(
        self, person_no: str, *, in_window: bool = True, following: bool = True, known: bool = True
    ) -> str:
        """Give the person a WeChat account; `known=False`: one the emulated WeChat never saw."""
        openid = f"o_{person_no}"
        seen = self.now() - (timedelta(hours=1) if in_window else timedelta(days=3))
        async with self.sessions.begin() as s:
            s.add(
                WeChatAccount(
                    openid=openid,
                    person_id=self.persons[person_no],
                    bound_at=seen,
                    last_seen_at=seen,
                )
            )
        if known:
            user = self.sim.users.add(openid, following=following)
            if in_window:
                user.window.on_message(self.sim_clock.time() - 3600)
        return openid

    async def push(
        self,
        person_no: str,
        *,
        kind: str = "reminder",
        text: str = "Please check in today.",
        key: str | None = None,
        urgent: bool = False,
    ) -> bool:
        async with self.sessions.begin() as s:
            return await self.notifications.enqueue(
                s,
                person_id=self.persons[person_no],
                kind=kind,
                text=text,
                key=key or f"{kind}:{person_no}",
                urgent=urgent,
                now=self.now(),
            )

    async def rows(self) -> list[OutboxMessage]:
        async with self.sessions() as s:
            return list(
                (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
            )

    async def row(self) -> OutboxMessage:
        rows = await self.rows()
        assert len(rows) == 1, rows
        return rows[0]

    def delivered(self, openid: str) -> list[Any]:
        """What the emulated WeChat showed the user from pushes (custom and template)."""
        return [
            e.message
            for e in self.sim.log.entries(openid)
            if e.message.via in ("custom", "template")
        ]

    async def set_last_seen(self, person_no: str, when: datetime) -> None:
        async with self.sessions.begin() as s:
            await s.execute(
                update(WeChatAccount)
                .where(WeChatAccount.person_id == self.persons[person_no])
                .values(last_seen_at=when)
            )


def rig_settings(tmp_path: Path, api_base: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/rig.db",
        "wechat_token": TOKEN,
        "wechat_appid": APPID,
        "wechat_secret": SECRET,
        "wechat_api_base": api_base,
        "data_key": DATA_KEY,
        "redis_url": None,
        "template_ids": TEMPLATES,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FrozenClock(NOON.timestamp())
    sim_clock = ManualClock(NOON.timestamp())
    sim_socket = reserved_socket()
    sim_port = port_of(sim_socket)
    settings = rig_settings(tmp_path, f"http://127.0.0.1:{sim_port}/sim/api")
    app = create_app(settings, clock=clock, kv=MemoryKV())
    bot_server = AppServer(app)
    await bot_server.start_server()
    sim_app = create_simulator_app(
        SimulatorConfig(
            token=TOKEN,
            appid=APPID,
            secret=SECRET,
            aes_key=None,
            callback_url=str(bot_server.make_url("/wechat")),
            personas_url=None,
        ),
        clock=sim_clock,
    )
    state = sim_app[STATE]
    state.template_report_delay = 0
    parent = web.Application()
    parent.add_subapp("/sim/", sim_app)
    sim_server = TestServer(parent, port=sim_port, socket_factory=lambda *_: sim_socket)
    await sim_server.start_server()
    try:
        await seed_campus(app[K.SESSIONS], app[K.SERVICES]["vault"])
        async with app[K.SESSIONS]() as s:
            persons = {no: pid for no, pid in await s.execute(select(Person.person_no, Person.id))}
        yield Rig(app, state, clock, sim_clock, persons)
    finally:
        await state.settle()
        await sim_server.close()
        await bot_server.close()
