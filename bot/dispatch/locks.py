"""A per-user lock around load → handle → save, across tasks and across workers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.keyspace import Keyspace
from bot.kv import KV


class LockTimeout(Exception):
    pass


class UserLocks:
    def __init__(self, kv: KV, keys: Keyspace, *, ttl: float = 30) -> None:
        self._kv = kv
        self._keys = keys
        self._ttl = ttl
        # In-process waiters queue on an asyncio.Lock instead of polling the store.
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, openid: str, timeout: float) -> AsyncIterator[None]:
        lock, users = self._local.get(openid, (asyncio.Lock(), 0))
        self._local[openid] = (lock, users + 1)
        try:
            async with asyncio.timeout(timeout):
                async with lock:
                    owner = secrets.token_hex(8)
                    await self._acquire(openid, owner)
                    try:
                        yield
                    finally:
                        await self._kv.delete_if_equals(self._keys.lock(openid), owner)
        except TimeoutError as exc:
            raise LockTimeout(openid) from exc
        finally:
            lock, users = self._local[openid]
            if users <= 1:
                del self._local[openid]
            else:
                self._local[openid] = (lock, users - 1)

    async def _acquire(self, openid: str, owner: str) -> None:
        key = self._keys.lock(openid)
        delay = 0.005
        while not await self._kv.set(key, owner, self._ttl, nx=True):
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
