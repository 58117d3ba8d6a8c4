"""Short-lived shared state (conversations, dedup, locks, limits, tokens): Redis or memory.

Both implementations honour one contract, tested in tests/bot/test_kv.py. The memory one is
for a single process (the demo, tests); several workers need Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis


class KV(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        """Store value for ttl seconds; with nx only when the key is absent. True if stored."""

    async def set_many(self, items: Mapping[str, bytes | str], ttl: float) -> None: ...

    async def delete(self, *keys: str) -> None: ...

    async def delete_if_equals(self, key: str, value: bytes | str) -> bool:
        """Delete key only while it still holds value (releasing a lock we own)."""

    async def extend_if_equals(self, key: str, value: bytes | str, ttl: float) -> bool:
        """Give key a new ttl only while it still holds value (renewing a lock we own)."""

    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter; the first increment starts its ttl."""

    async def enter(
        self,
        counter: str,
        counter_ttl: float,
        lock: str,
        owner: str,
        lock_ttl: float,
        reads: Sequence[str],
    ) -> tuple[int, bool, list[bytes | None]]:
        """A message's first round trip: count it, try its lock, and read its keys.

        Returns the count, whether the lock was taken, and the values of `reads` (read
        whether or not the lock was taken; only trust them when it was).
        """

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
    ) -> None:
        """A message's last round trip: write and delete its keys, then release its lock."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _bytes(value: bytes | str | None) -> bytes | None:
    return value if value is None or isinstance(value, bytes) else value.encode()


class MemoryKV:
    """A dict with expiry. Single process only."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._now = monotonic
        self._writes = 0

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= self._now():
            del self._data[key]
            return None
        return item[0]

    def _sweep(self) -> None:
        self._writes += 1
        if self._writes % 10_000 == 0:
            now = self._now()
            for key in [k for k, (_, exp) in self._data.items() if exp <= now]:
                del self._data[key]

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._live(k) for k in keys]

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        if nx and self._live(key) is not None:
            return False
        self._data[key] = (_b(value), self._now() + ttl)
        self._sweep()
        return True

    async def set_many(self, items: Mapping[str, bytes | str], ttl: float) -> None:
        expires = self._now() + ttl
        for key, value in items.items():
            self._data[key] = (_b(value), expires)
        self._sweep()

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def delete_if_equals(self, key: str, value: bytes | str) -> bool:
        if self._live(key) == _b(value):
            del self._data[key]
            return True
        return False

    async def extend_if_equals(self, key: str, value: bytes | str, ttl: float) -> bool:
        if self._live(key) == _b(value):
            self._data[key] = (_b(value), self._now() + ttl)
            return True
        return False

    async def incr(self, key: str, ttl: float) -> int:
        current = self._live(key)
        if current is None:
            self._data[key] = (b"1", self._now() + ttl)
            self._sweep()
            return 1
        count = int(current) + 1
        self._data[key] = (str(count).encode(), self._data[key][1])
        return count

    async def enter(
        self,
        counter: str,
        counter_ttl: float,
        lock: str,
        owner: str,
        lock_ttl: float,
        reads: Sequence[str],
    ) -> tuple[int, bool, list[bytes | None]]:
        count = await self.incr(counter, counter_ttl)
        locked = await self.set(lock, owner, lock_ttl, nx=True)
        return count, locked, await self.get_many(reads)

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
    ) -> None:
        if writes:
            await self.set_many(writes, ttl)
        await self.delete(*deletes)
        await self.delete_if_equals(lock, owner)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


_DELETE_IF_EQUALS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_EXTEND_IF_EQUALS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_INCR_WITH_TTL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


# KEYS: counter, lock, reads…  ARGV: counter ttl ms, owner, lock ttl ms
_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local locked = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) and 1 or 0
local values = {}
if #KEYS > 2 then values = redis.call('MGET', unpack(KEYS, 3)) end
return {n, locked, values}
"""

# KEYS: lock, written keys…, deleted keys…  ARGV: owner, ttl ms, number written, values…
_LEAVE = """
local written = tonumber(ARGV[3])
for i = 1, written do
  redis.call('SET', KEYS[1 + i], ARGV[3 + i], 'PX', ARGV[2])
end
for i = 2 + written, #KEYS do redis.call('DEL', KEYS[i]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisKV:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._delete_if_equals = redis.register_script(_DELETE_IF_EQUALS)
        self._extend_if_equals = redis.register_script(_EXTEND_IF_EQUALS)
        self._incr = redis.register_script(_INCR_WITH_TTL)
        self._enter = redis.register_script(_ENTER)
        self._leave = redis.register_script(_LEAVE)

    @classmethod
    def from_url(cls, url: str) -> RedisKV:
        # A blocking pool: under a burst, requests wait for a connection instead of failing.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, socket_timeout=5, socket_connect_timeout=3
        )
        return cls(Redis.from_pool(pool))

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        return value if value is None or isinstance(value, bytes) else value.encode()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values = await self.redis.mget(list(keys))
        return [v if v is None or isinstance(v, bytes) else v.encode() for v in values]

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        done = await self.redis.set(key, value, px=max(1, int(ttl * 1000)), nx=nx)
        return bool(done)

    async def set_many(self, items: Mapping[str, bytes | str], ttl: float) -> None:
        px = max(1, int(ttl * 1000))
        async with self.redis.pipeline(transaction=True) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=px)
            await pipe.execute()

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.redis.delete(*keys)

    async def delete_if_equals(self, key: str, value: bytes | str) -> bool:
        return bool(await self._delete_if_equals(keys=[key], args=[value]))

    async def extend_if_equals(self, key: str, value: bytes | str, ttl: float) -> bool:
        px = max(1, int(ttl * 1000))
        return bool(await self._extend_if_equals(keys=[key], args=[value, px]))

    async def incr(self, key: str, ttl: float) -> int:
        return int(await self._incr(keys=[key], args=[max(1, int(ttl * 1000))]))

    async def enter(
        self,
        counter: str,
        counter_ttl: float,
        lock: str,
        owner: str,
        lock_ttl: float,
        reads: Sequence[str],
    ) -> tuple[int, bool, list[bytes | None]]:
        count, locked, values = await self._enter(
            keys=[counter, lock, *reads], args=[_ms(counter_ttl), owner, _ms(lock_ttl)]
        )
        return int(count), bool(locked), [_bytes(v) for v in values]

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
    ) -> None:
        await self._leave(
            keys=[lock, *writes, *deletes], args=[owner, _ms(ttl), len(writes), *writes.values()]
        )

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.redis.ping(), timeout=2))
        except Exception:
            return False

    async def close(self) -> None:
        await self.redis.aclose()
