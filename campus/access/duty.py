"""Which place a guard is on duty at (for one shift), and an exit announced before a scan.

Both live in the KV store with a TTL: a forgotten `下岗` ends with the shift, and a `出`
that no scan follows lapses after two minutes instead of turning some later entry into an
exit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.keyspace import Keyspace
from bot.kv import KV

EXIT_TTL = 120.0
IN, OUT = "in", "out"


@dataclass(frozen=True, slots=True)
class Post:
    """A guard's current post and the direction of their next scan."""

    place_id: int | None
    direction: str


class GuardDuty:
    def __init__(self, kv: KV, keys: Keyspace, *, shift: float) -> None:
        self._kv = kv
        self._keys = keys
        self.shift = shift

    async def start(self, openid: str, place_id: int) -> None:
        await self._kv.set(self._keys.duty(openid), str(place_id), self.shift)

    async def end(self, openid: str) -> int | None:
        """End the duty; the place it was at, or None when not on duty."""
        key = self._keys.duty(openid)
        value = await self._kv.get(key)
        await self._kv.delete(key, self._keys.exit_next(openid))
        return int(value) if value else None

    async def place(self, openid: str) -> int | None:
        value = await self._kv.get(self._keys.duty(openid))
        return int(value) if value else None

    async def mark_exit(self, openid: str) -> None:
        await self._kv.set(self._keys.exit_next(openid), "1", EXIT_TTL)

    def post_keys(self, openid: str) -> list[str]:
        """What `take_post` reads: the dispatcher can fetch them with the conversation."""
        return [self._keys.duty(openid), self._keys.exit_next(openid)]

    async def take_post(self, openid: str, known: Mapping[str, bytes | None] | None = None) -> Post:
        """The guard's post, consuming a pending exit: on the scan's hot path, no read of
        its own when `known` holds both keys (read under the user's lock, just now)."""
        keys = self.post_keys(openid)
        if known is not None and all(key in known for key in keys):
            duty, exit_next = (known[key] for key in keys)
        else:
            duty, exit_next = await self._kv.get_many(keys)
        if exit_next is not None:
            await self._kv.delete(self._keys.exit_next(openid))
        return Post(int(duty) if duty else None, OUT if exit_next is not None else IN)

    async def take_direction(self, openid: str) -> str:
        """For a self check-in: `out` once after `出`, else `in`."""
        key = self._keys.exit_next(openid)
        if await self._kv.get(key) is None:
            return IN
        await self._kv.delete(key)
        return OUT
