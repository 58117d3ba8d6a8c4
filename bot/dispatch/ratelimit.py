"""Per-user message rate limit (fixed one-minute windows), counted in the first round trip."""

from __future__ import annotations

from enum import Enum

from bot.clock import Clock
from bot.keyspace import Keyspace

WINDOW = 60
COUNTER_TTL = 2 * WINDOW


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"  # the first message over the limit: answered politely
    DROP = "drop"  # later ones in the same window: not answered at all


class RateLimiter:
    def __init__(
        self, keys: Keyspace, per_minute: int, clock: Clock, *, guard_per_minute: int = 600
    ) -> None:
        self._keys = keys
        self._limit = per_minute
        # A guard at a busy gate sends one message per person let in.
        self._guard_limit = max(guard_per_minute, per_minute)
        self._clock = clock

    def counter(self, openid: str) -> str:
        return self._keys.rate(openid, int(self._clock.time() // WINDOW))

    def verdict(self, count: int, roles: frozenset[str] = frozenset()) -> Verdict:
        limit = self._guard_limit if "guard" in roles else self._limit
        if count <= limit:
            return Verdict.ALLOW
        return Verdict.WARN if count == limit + 1 else Verdict.DROP
