"""A per-user lock around load → handle → save, across tasks and across workers.

Two layers: an asyncio.Lock queues a user's messages inside one process without touching the
store; the store's lock (taken in the message's first round trip, see KV.enter) keeps
workers apart. Only when another worker holds it do we poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.keyspace import Keyspace
from bot.kv import KV

LOCK_TTL = 30.0


class LockTimeout(Exception):
    pass


class UserLocks:
    def __init__(self, kv: KV, keys: Keyspace, *, ttl: float = LOCK_TTL) -> None:
        self._kv = kv
        self._keys = keys
        self.ttl = ttl
        self._local: dict[str, tuple[asyncio.Lock, int]] = {}

    def key(self, openid: str) -> str:
        return self._keys.lock(openid)

    @asynccontextmanager
    async def local(self, openid: str, timeout: float) -> AsyncIterator[None]:
        """This process's queue for one user."""
        lock, users = self._local.get(openid, (asyncio.Lock(), 0))
        self._local[openid] = (lock, users + 1)
        try:
            async with asyncio.timeout(timeout):
                await lock.acquire()
        except TimeoutError as exc:
            self._drop(openid)
            raise LockTimeout(openid) from exc
        try:
            yield
        finally:
            lock.release()
            self._drop(openid)

    def _drop(self, openid: str) -> None:
        lock, users = self._local[openid]
        if users <= 1:
            del self._local[openid]
        else:
            self._local[openid] = (lock, users - 1)

    async def wait_for_store_lock(self, openid: str, owner: str, timeout: float) -> None:
        """Poll until another worker releases the user's lock (or its TTL ends)."""
        key = self._keys.lock(openid)
        delay = 0.005
        try:
            async with asyncio.timeout(timeout):
                while not await self._kv.set(key, owner, self.ttl, nx=True):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
        except TimeoutError as exc:
            raise LockTimeout(openid) from exc

    async def release(self, openid: str, owner: str) -> None:
        await self._kv.delete_if_equals(self._keys.lock(openid), owner)
