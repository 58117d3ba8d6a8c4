"""The simulator's aiohttp application: mount it with `app.add_subapp("/sim/", ...)`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from simulator import chat, events, page
from simulator.api import create_api_app
from simulator.clock import Clock, SystemClock
from simulator.config import SimulatorConfig
from simulator.keys import STATE
from simulator.state import SimulatorState


def create_simulator_app(config: SimulatorConfig, *, clock: Clock | None = None) -> web.Application:
    app = web.Application()
    state = SimulatorState(config, clock or SystemClock())
    app[STATE] = state
    for module in (page, chat, events):
        app.router.add_routes(module.routes)
    app.add_subapp("/api/", create_api_app())
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_end_streams)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.start()
    yield
    await state.close()


async def _end_streams(app: web.Application) -> None:
    # Open event streams would otherwise hold the server's shutdown until they time out.
    app[STATE].log.notify_all("close")
