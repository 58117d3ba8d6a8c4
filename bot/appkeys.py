"""Typed keys for everything the aiohttp application holds."""

from __future__ import annotations

from typing import Any

from aiohttp import ClientSession, web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.kv import KV
from bot.settings import Settings
from bot.wechat.api import WeChatAPI
from bot.wechat.callback import Callback
from bot.wechat.courier import Courier
from scheduler.runner import Scheduler

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
KV_STORE = web.AppKey("kv", KV)
HTTP = web.AppKey("http", ClientSession)
API = web.AppKey("api", WeChatAPI)
COURIER = web.AppKey("courier", Courier)
CALLBACK = web.AppKey("callback", Callback)
SERVICES = web.AppKey("services", dict[str, Any])
SCHEDULER = web.AppKey("scheduler", Scheduler)
