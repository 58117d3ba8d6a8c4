"""Per-user message rate limit (fixed one-minute windows)."""

from __future__ import annotations

from enum import Enum

from bot.clock import Clock
from bot.keyspace import Keyspace
from bot.kv import KV


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first message over the limit: answered politely
    DROP = "drop"  # later ones in the same window: not answered at all


class RateLimiter:
    def __init__(self, kv: KV, keys: Keyspace, per_minute: int, clock: Clock) -> None:
        self._kv = kv
        self._keys = keys
        self._limit = per_minute
        self._clock = clock

    async def check(self, openid: str) -> Verdict:
        window = int(self._clock.time() // 60)
        count = await self._kv.incr(self._keys.rate(openid, window), ttl=120)
        if count <= self._limit:
            return Verdict.ALLOW
        return Verdict.WARN if count == self._limit + 1 else Verdict.DROP
