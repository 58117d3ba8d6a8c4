"""Fixtures for the simulator's tests: a fake bot server and the simulator mounted at /sim/."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from simulator import SimulatorConfig, create_simulator_app
from simulator.clock import ManualClock
from simulator.keys import STATE
from tests.simulator.harness import AES_KEY, APPID, SECRET, TOKEN, FakeBot, Sim

MakeSim = Callable[..., Awaitable[Sim]]


@pytest.fixture
def bot() -> FakeBot:
    return FakeBot()


@pytest.fixture
async def make_sim(aiohttp_client: Any, aiohttp_server: Any, bot: FakeBot) -> MakeSim:
    server = await aiohttp_server(bot.app())

    async def make(
        *, safe: bool = False, personas: bool = True, callback_url: str | None = None
    ) -> Sim:
        bot.safe = safe
        config = SimulatorConfig(
            token=TOKEN,
            appid=APPID,
            secret=SECRET,
            aes_key=AES_KEY if safe else None,
            callback_url=callback_url or str(server.make_url("/wechat")),
            personas_url=str(server.make_url("/personas")) if personas else None,
        )
        clock = ManualClock()
        sim_app = create_simulator_app(config, clock=clock)
        state = sim_app[STATE]
        state.template_report_delay = 0
        parent = web.Application()
        parent.add_subapp("/sim/", sim_app)
        client = await aiohttp_client(parent)
        return Sim(client, state, clock, bot)

    return make


@pytest.fixture
async def sim(make_sim: MakeSim) -> Sim:
    return await make_sim()
