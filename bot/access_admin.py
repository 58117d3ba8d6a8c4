"""The IT operator's access commands: `menu sync` (with the guards' menu), `poster`, `keys`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.access import key_ring
from bot.clock import SystemClock
from bot.i18n import N_, translator
from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV, RedisKV
from bot.menu import prune_guard_tag, sync
from bot.settings import Settings
from bot.wechat.api import WeChatAPI
from bot.wechat.token import AccessTokenManager
from campus.access.artwork import PosterText, render_poster
from campus.access.keys import KeyInfo, KeyRing
from campus.access.posters import PosterBook, scene_for
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import Person, WeChatAccount


@asynccontextmanager
async def _sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    try:
        if settings.is_sqlite:
            await upgrade(engine)
        yield session_factory(engine)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _api(settings: Settings) -> AsyncIterator[tuple[WeChatAPI, KV]]:
    kv: KV = RedisKV.from_url(settings.redis_url) if settings.redis_url else MemoryKV()
    try:
        async with aiohttp.ClientSession() as http:
            tokens = AccessTokenManager(http, settings, kv, Keyspace(settings.wechat_appid))
            yield WeChatAPI(http, settings, tokens), kv
    finally:
        await kv.close()


async def guard_openids(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """The followers bound to active persons with the guard role."""
    stmt = (
        select(WeChatAccount.openid, Person.roles)
        .join(Person, Person.id == WeChatAccount.person_id)
        .where(Person.state == "active", Person.roles.contains("guard"))
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return sorted(openid for openid, roles in rows if "guard" in roles.split(";"))


async def sync_menu(settings: Settings) -> MenuSync:
    """Create the menus, tag the bound guards and untag those who no longer are guards."""
    async with _sessions(settings) as sessions:
        guards = await guard_openids(sessions)
    async with _api(settings) as (api, kv):
        await sync(api, guards)
        untagged = await prune_guard_tag(api, guards)
        keys = Keyspace(settings.wechat_appid)
        if untagged:  # going on duty again must tag them again, not trust the old marker
            await kv.delete(*(keys.guard_tagged(openid) for openid in untagged))
    return MenuSync(len(guards), len(untagged))


@dataclass(frozen=True, slots=True)
class MenuSync:
    tagged: int
    untagged: int


@dataclass(frozen=True, slots=True)
class Poster:
    place_name: str
    scene: str
    url: str
    size: int


async def make_poster(settings: Settings, code: str, output: Path) -> Poster:
    """Create the place's permanent QR code (scene `place:<CODE>`) and render its poster."""
    async with _sessions(settings) as sessions:
        book = PosterBook(sessions)
        place = await book.place(code)
        scene = scene_for(place.code)
        async with _api(settings) as (api, _kv):
            answer = await api.create_qrcode_str_scene(scene, None)
        url, ticket = str(answer.get("url", "")), str(answer["ticket"])
        if not url:
            raise ValueError("WeChat's answer has no 'url' (the text of the QR code)")
        await book.remember(place.id, scene, ticket, url)
    png = await asyncio.to_thread(render_poster, url, poster_text(place.name, place.code))
    await asyncio.to_thread(output.write_bytes, png)
    return Poster(place.name, scene, url, len(png))


def poster_text(name: str, code: str) -> PosterText:
    zh, en = translator("zh_CN"), translator("en")
    instructions = N_(
        "Scan this code with WeChat to check in here; you will see at once whether you may "
        "enter. Leaving? Send out first, then scan this code."
    )
    header = N_("Healthy Campus")
    return PosterText(
        title=name,
        header=f"{zh(header)} {en(header)}",
        instructions=(zh(instructions), en(instructions)),
        footer=code,
    )


def _ring(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> KeyRing:
    return key_ring(settings, sessions, DataVault.from_setting(settings.data_key), SystemClock())


async def rotate_keys(settings: Settings) -> tuple[KeyInfo, list[KeyInfo]]:
    async with _sessions(settings) as sessions:
        ring = _ring(settings, sessions)
        new = await ring.rotate()
        return new, await ring.all_keys()


async def list_keys(settings: Settings) -> list[KeyInfo]:
    async with _sessions(settings) as sessions:
        return await _ring(settings, sessions).all_keys()


async def export_jwks(settings: Settings) -> dict[str, Any]:
    async with _sessions(settings) as sessions:
        ring = _ring(settings, sessions)
        await ring.signer()  # a campus without a key gets its first one now
        return await ring.jwks()
