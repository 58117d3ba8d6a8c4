"""Fixtures for the bot: a bot app on a temporary SQLite file, talking to a fake WeChat API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import appkeys as K
from bot.app import create_app
from bot.clock import Clock
from bot.kv import KV
from bot.settings import Settings
from tests.support import APPID, DATA_KEY, TOKEN, AppServer, FakeWeChatAPI, WeChat, seed_campus

MakeBot = Callable[..., Awaitable[WeChat]]


def slow_binding(wechat: WeChat, delay: float) -> asyncio.Event:
    """Make the bot's `bind` take `delay` seconds more; the event is set when a call ends."""
    binding = wechat.client.app[K.SERVICES]["binding"]
    original = binding.bind
    finished = asyncio.Event()

    async def slow_bind(*args: Any) -> Any:
        await asyncio.sleep(delay)
        try:
            return await original(*args)
        finally:
            finished.set()

    binding.bind = slow_bind
    return finished


@pytest.fixture
async def fake_api(aiohttp_server: Any) -> FakeWeChatAPI:
    fake = FakeWeChatAPI()
    server = await aiohttp_server(fake.app())
    fake.base = str(server.make_url("")).rstrip("/")  # type: ignore[attr-defined]
    return fake


def bot_settings(tmp_path: Path, api_base: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/bot.db",
        "wechat_token": TOKEN,
        "wechat_appid": APPID,
        "wechat_api_base": api_base,
        "data_key": DATA_KEY,
        "redis_url": None,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def make_bot(tmp_path: Path, aiohttp_client: Any, fake_api: FakeWeChatAPI) -> MakeBot:
    async def make(
        *, kv: KV | None = None, clock: Clock | None = None, seed: bool = True, **overrides: Any
    ) -> WeChat:
        settings = bot_settings(tmp_path, fake_api.base, **overrides)  # type: ignore[attr-defined]
        app = create_app(settings, clock=clock, kv=kv)
        client = await aiohttp_client(AppServer(app))
        if seed:
            await seed_campus(app[K.SESSIONS], app[K.SERVICES]["vault"])
        return WeChat(
            client,
            aes_key=settings.wechat_aes_key,
            now=clock.time if clock is not None else time.time,
        )

    return make
