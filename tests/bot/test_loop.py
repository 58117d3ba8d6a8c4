"""The serving event loop (bot/loop.py): uvloop by default, asyncio's on request, and the
bot's own I/O (the Redis client, SQLite inline, the app) working on both."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

import pytest
import uvloop
from aiohttp.test_utils import TestClient

from bot.app import create_app
from bot.loop import new_loop
from bot.resp import RespClient
from bot.settings import Settings
from tests.support import APPID, TOKEN, AppServer, WeChat


def test_the_loop_is_uvloop_unless_asyncio_is_asked_for() -> None:
    for choice, kind in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop)):
        loop = new_loop(choice)
        try:
            assert isinstance(loop, kind)
        finally:
            loop.close()
    loop = new_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()
    with pytest.raises(ValueError, match="unknown event loop"):
        new_loop("trio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    loop = new_loop("auto")
    try:
        assert type(loop).__module__.startswith("asyncio")
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="not installed"):
        new_loop("uvloop")


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_the_bot_answers_a_message_on_either_loop(
    choice: str, redis_url: str, tmp_path: Path
) -> None:
    """Redis (the lean RESP client), SQLite on the loop's thread and the callback, end to end."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/loop.db",
        redis_url=redis_url,
        wechat_token=TOKEN,
        wechat_appid=APPID,
        wechat_api_base="http://127.0.0.1:9",
    )

    async def scenario() -> str:
        resp = RespClient(redis_url)
        key = f"test:loop:{secrets.token_hex(4)}"
        try:
            await resp.execute("SET", key, "v", "PX", 10_000)
            assert await resp.execute("GET", key) == b"v"
        finally:
            await resp.execute("DEL", key)
            await resp.close()
        client = TestClient(AppServer(create_app(settings)))
        await client.start_server()
        try:
            return await WeChat(client).say(f"o_loop_{secrets.token_hex(4)}", "帮助")
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=lambda: new_loop(choice)) as runner:
        reply = runner.run(scenario())
    assert reply.startswith("你可以发送"), reply
