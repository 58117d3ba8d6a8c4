"""Retries processed once: the first delivery runs, a retry waits for it or gets its reply."""

from __future__ import annotations

import asyncio
from enum import Enum

from bot.keyspace import Keyspace
from bot.kv import KV

_PENDING = b"\x00"


class Claim(Enum):
    FIRST = "first"
    DUPLICATE = "duplicate"


class Deduplicator:
    def __init__(
        self, kv: KV, keys: Keyspace, *, ttl: float = 300, pending_ttl: float = 30
    ) -> None:
        self._kv = kv
        self._keys = keys
        self._ttl = ttl
        # A worker that dies mid-message leaves the marker; it expires so a later retry runs.
        self._pending_ttl = pending_ttl
        self._local: dict[str, asyncio.Event] = {}

    async def claim(self, key: str) -> Claim:
        if await self._kv.set(self._keys.dedup(key), _PENDING, self._pending_ttl, nx=True):
            self._local[key] = asyncio.Event()
            return Claim.FIRST
        return Claim.DUPLICATE

    async def wait(self, key: str, timeout: float) -> str | None:
        """The stored reply of the first delivery, or None if it is still running at timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        local = self._local.get(key)
        delay = 0.01
        while True:
            value = await self._kv.get(self._keys.dedup(key))
            if value is None:
                return None  # the first delivery failed and released its claim
            if value != _PENDING:
                return value.decode()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if local is not None:  # same process: wake as soon as it finishes
                try:
                    await asyncio.wait_for(local.wait(), timeout=min(remaining, 0.5))
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.1)

    async def store(self, key: str, reply: str) -> None:
        await self._kv.set(self._keys.dedup(key), reply, self._ttl)
        self._wake(key)

    async def release(self, key: str) -> None:
        await self._kv.delete(self._keys.dedup(key))
        self._wake(key)

    def _wake(self, key: str) -> None:
        event = self._local.pop(key, None)
        if event is not None:
            event.set()
