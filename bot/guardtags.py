"""The WeChat user tag of guards, whose conditional menu carries the VERIFY scanner."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from bot.keyspace import Keyspace
from bot.kv import KV
from bot.wechat.errors import WeChatError

log = logging.getLogger(__name__)

GUARD_TAG = "门岗 guards"
GUARD_TAGGED_TTL = 30 * 24 * 3600


class MenuAPI(Protocol):
    async def create_menu(self, menu: dict[str, Any]) -> object: ...

    async def get_menu(self) -> dict[str, Any]: ...

    async def get_tags(self) -> dict[str, int]: ...

    async def create_tag(self, name: str) -> int: ...

    async def tag_users(self, tag_id: int, openids: Sequence[str]) -> None: ...

    async def untag_users(self, tag_id: int, openids: Sequence[str]) -> None: ...

    async def tagged_users(self, tag_id: int) -> list[str]: ...

    async def add_conditional_menu(self, menu: dict[str, Any]) -> str: ...

    async def delete_conditional_menu(self, menuid: str) -> None: ...


async def guard_tag_id(api: MenuAPI, *, create: bool) -> int | None:
    tags = await api.get_tags()
    if GUARD_TAG in tags:
        return tags[GUARD_TAG]
    return await api.create_tag(GUARD_TAG) if create else None


class GuardTagger:
    """Tags a guard going on duty, so the scanner appears without waiting for a menu sync."""

    def __init__(self, api: MenuAPI, kv: KV, keys: Keyspace) -> None:
        self._api = api
        self._kv = kv
        self._keys = keys

    async def tag(self, openid: str) -> bool:
        """True when the guard has the tag (now or already); failures are only logged."""
        if await self._kv.get(self._keys.guard_tagged(openid)) is not None:
            return True
        try:
            cached = await self._kv.get(self._keys.guard_tag())
            tag_id = int(cached) if cached else await guard_tag_id(self._api, create=False)
            if tag_id is None:
                log.warning("no guard tag yet: run `healthbot menu sync` to create it")
                return False
            await self._kv.set(self._keys.guard_tag(), str(tag_id), GUARD_TAGGED_TTL)
            await self._api.tag_users(tag_id, [openid])
        except WeChatError as exc:
            log.warning("guard not tagged: %s", exc)
            await self._kv.delete(self._keys.guard_tag())  # the tag may have been deleted
            return False
        await self._kv.set(self._keys.guard_tagged(openid), "1", GUARD_TAGGED_TTL)
        return True
