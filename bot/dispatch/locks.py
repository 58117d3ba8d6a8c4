"""A per-user lock around load → handle → save, across tasks and across workers.

Two layers: a first-come-first-served queue per user (`UserLocks.local`) orders a user's
messages inside one process without touching the store; the store's lock (taken in the
message's first round trip, see KV.enter) keeps workers apart. Only when another worker holds
it do we poll.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

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
        # A user whose message is being handled here → the messages waiting behind it.
        self._local: dict[str, deque[asyncio.Future[None]]] = {}

    def in_hand(self) -> int:
        """How many users have a message being handled in this process."""
        return len(self._local)

    def key(self, openid: str) -> str:
        return self._keys.lock(openid)

    def local(self, openid: str, timeout: float) -> Turn:
        """This process's queue for one user (first come, first served): `async with` it.
        A user with no other message here takes the turn at once, without a lock object,
        a timer or a suspension; only one who must wait gets them."""
        return Turn(self._local, openid, timeout)

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


class Turn:
    __slots__ = ("_held", "_openid", "_queues", "_timeout")

    def __init__(
        self, queues: dict[str, deque[asyncio.Future[None]]], openid: str, timeout: float
    ) -> None:
        self._queues = queues
        self._openid = openid
        self._timeout = timeout
        self._held = False

    async def __aenter__(self) -> None:
        queue = self._queues.get(self._openid)
        if queue is None:
            self._queues[self._openid] = deque()
            return
        waiter = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            async with asyncio.timeout(self._timeout):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self._pass_on()  # handed the turn just as this one gave up
            elif waiter in queue:
                queue.remove(waiter)
            if isinstance(exc, TimeoutError):
                raise LockTimeout(self._openid) from exc
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._held:
            self._pass_on()

    def hold(self) -> Callable[[], None]:
        """Keep the turn past the end of the `async with`: the user's next message here waits
        until the function returned is called (once)."""
        self._held = True
        return self._pass_on

    def _pass_on(self) -> None:
        queue = self._queues[self._openid]
        while queue:
            waiter = queue.popleft()
            if not waiter.done():  # not given up meanwhile
                waiter.set_result(None)
                return
        del self._queues[self._openid]
