"""Retries processed once: the first delivery runs, a retry waits for it or gets its reply."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from enum import Enum

from bot.keyspace import Keyspace
from bot.kv import KV, Stamp
from bot.loop import TICK
from bot.replies import Reply
from bot.wechat.render import SUCCESS

PENDING = b"\x00"


class Claim(Enum):
    FIRST = "first"
    DUPLICATE = "duplicate"


class Once:
    """One delivery's dedup marker, claimed and stamped inside the dispatcher's own round trips.

    The dispatcher passes `claim` to KV.enter (a retry finds the marker taken and gets its
    value instead of running) and `stamp(reply)` to KV.leave, which stores the rendered reply
    before the user's lock is released. `late` is set by the callback when the 4.5 s passed:
    the callback has stored `success` itself and the reply goes out as a push, so a retry must
    not get it again.
    """

    __slots__ = ("_dedup", "_render", "claim", "is_claimed", "is_stamped", "key", "late", "plain")

    def __init__(self, dedup: Deduplicator, key: str, render: Callable[[Reply], str]) -> None:
        self._dedup = dedup
        self._render = render
        self.key = key
        self.claim = Stamp(dedup.store_key(key), PENDING, dedup.pending_ttl)
        self.late = False
        self.is_claimed = False
        self.is_stamped = False
        self.plain: str | None = None  # the rendered passive reply, once stamped in time

    def claimed(self) -> None:
        """The claim was taken: local retries may now wait for this delivery's reply."""
        self.is_claimed = True
        self._dedup._local.setdefault(self.key, asyncio.Event())

    def stamp(self, reply: Reply) -> Stamp:
        """What a retry will get: the rendered reply; `success` once the answer went late
        (it is then pushed, and must not come a second time as a passive reply)."""
        self.is_stamped = True
        if self.late:
            return Stamp(self.claim.key, SUCCESS, self._dedup.ttl)
        self.plain = self._render(reply)
        return Stamp(self.claim.key, self.plain, self._dedup.ttl)


class Deduplicator:
    def __init__(
        self, kv: KV, keys: Keyspace, *, ttl: float = 300, pending_ttl: float = 30
    ) -> None:
        self._kv = kv
        self._keys = keys
        self.ttl = ttl
        # A worker that dies mid-message leaves the marker; it expires so a later retry runs.
        self.pending_ttl = pending_ttl
        self._local: dict[str, asyncio.Event] = {}

    async def claim(self, key: str) -> Claim:
        if await self._kv.set(self._keys.dedup(key), PENDING, self.pending_ttl, nx=True):
            self._local[key] = asyncio.Event()
            return Claim.FIRST
        return Claim.DUPLICATE

    def store_key(self, key: str) -> str:
        return self._keys.dedup(key)

    def once(self, key: str, render: Callable[[Reply], str]) -> Once:
        """A claim the dispatcher takes and stamps in its own round trips (see Once)."""
        return Once(self, key, render)

    def settled(self, key: str) -> None:
        """The dispatcher stamped (or gave up) this delivery: wake local waiters."""
        self._wake(key)

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
            if value != PENDING:
                return value.decode()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            remaining = max(remaining, TICK)  # else the last sliver spins on uvloop
            if local is not None and not local.is_set():  # same process: wake when it finishes
                try:
                    await asyncio.wait_for(local.wait(), timeout=min(remaining, 0.5))
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, 0.1)

    async def store(self, key: str, reply: bytes | str) -> None:
        try:
            await self._kv.set(self._keys.dedup(key), reply, self.ttl)
        finally:
            self._wake(key)

    async def release(self, key: str) -> None:
        try:
            await self._kv.delete(self._keys.dedup(key))
        finally:
            self._wake(key)

    def _wake(self, key: str) -> None:
        event = self._local.pop(key, None)
        if event is not None:
            event.set()
