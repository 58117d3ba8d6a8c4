"""Short-lived shared state (conversations, dedup, locks, limits, tokens): Redis or memory.

Both implementations honour one contract, tested in tests/bot/test_kv.py. The memory one is
for a single process (the demo, tests); several workers need Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import BlockingConnectionPool, Redis

from bot.resp import Arg, RespClient, Script


@dataclass(frozen=True, slots=True)
class Stamp:
    """One key written with its own ttl in a message's round trip (the dedup marker, a
    principal to cache).

    A `guard`ed stamp is written only while the key still holds `expect` (None: while it is
    absent), so a value read before someone else's change is never written after it.
    """

    key: str
    value: bytes | str
    ttl: float
    guard: bool = False
    expect: bytes | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    count: int
    locked: bool
    values: list[bytes | None]
    duplicate: bytes | None = None  # the claim was taken already: its value


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
        claim: Stamp | None = None,
    ) -> Entry:
        """A message's first round trip: claim it, count it, try its lock, read its keys.

        With `claim`, the claim key is set first, only if absent; when it is already there
        (a retry of a message seen before) nothing else happens and `Entry.duplicate` holds
        the claim's value. Otherwise: the count, whether the lock was taken, and the values of
        `reads` (read whether or not the lock was taken; only trust them when it was).
        """

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
        stamps: Sequence[Stamp] = (),
    ) -> None:
        """A message's last round trip: write `stamps` (each with its own ttl: the dedup
        marker, a principal to cache; a guarded one only if its key holds what it expects),
        write and delete its keys, then release its lock."""

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _b(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


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
        claim: Stamp | None = None,
    ) -> Entry:
        if claim is not None and not await self.set(claim.key, claim.value, claim.ttl, nx=True):
            return Entry(0, False, [], duplicate=self._live(claim.key))
        count = await self.incr(counter, counter_ttl)
        locked = await self.set(lock, owner, lock_ttl, nx=True)
        return Entry(count, locked, await self.get_many(reads))

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
        stamps: Sequence[Stamp] = (),
    ) -> None:
        for stamp in stamps:
            if stamp.guard and self._live(stamp.key) != (
                None if stamp.expect is None else _b(stamp.expect)
            ):
                continue
            await self.set(stamp.key, stamp.value, stamp.ttl)
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


# KEYS: counter, lock, [claim], reads…
# ARGV: counter ttl ms, owner, lock ttl ms, has claim (0|1), [claim value, claim ttl ms]
_ENTER = """
local first = 3
if ARGV[4] == '1' then
  first = 4
  if not redis.call('SET', KEYS[3], ARGV[5], 'NX', 'PX', ARGV[6]) then
    return {0, 0, {}, redis.call('GET', KEYS[3])}
  end
end
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local locked = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) and 1 or 0
local values = {}
if #KEYS >= first then values = redis.call('MGET', unpack(KEYS, first)) end
return {n, locked, values}
"""

# KEYS: lock, written keys…, deleted keys…, stamp keys…
# ARGV: owner, ttl ms, number written, number of stamps, values…,
#       (stamp value, stamp ttl ms, when: a(lways) | n(ot there) | e(quals), expected)…
_LEAVE = """
local written = tonumber(ARGV[3])
local stamped = tonumber(ARGV[4])
local last = #KEYS - stamped
for j = 1, stamped do
  local a = 4 + written + 4 * (j - 1)
  local key, when = KEYS[last + j], ARGV[a + 3]
  if when == 'a' then
    redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2])
  elseif when == 'n' then
    redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2], 'NX')
  elseif redis.call('GET', key) == ARGV[a + 4] then
    redis.call('SET', key, ARGV[a + 1], 'PX', ARGV[a + 2])
  end
end
for i = 1, written do
  redis.call('SET', KEYS[1 + i], ARGV[4 + i], 'PX', ARGV[2])
end
for i = 2 + written, last do redis.call('DEL', KEYS[i]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


_SET_MANY = """
for i = 1, #KEYS do redis.call('SET', KEYS[i], ARGV[1 + i], 'PX', ARGV[1]) end
return 1
"""


class RedisKV:
    """The contract over Redis: the message path through the lean pipelined client
    (bot/resp.py); `redis` is a redis-py client for administration and tests."""

    def __init__(self, redis: Redis, resp: RespClient) -> None:
        self.redis = redis
        self.resp = resp
        self._delete_if_equals = Script(_DELETE_IF_EQUALS)
        self._extend_if_equals = Script(_EXTEND_IF_EQUALS)
        self._incr = Script(_INCR_WITH_TTL)
        self._enter = Script(_ENTER)
        self._leave = Script(_LEAVE)
        self._set_many = Script(_SET_MANY)

    @classmethod
    def from_url(cls, url: str) -> RedisKV:
        # A blocking pool: under a burst, requests wait for a connection instead of failing.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=16, timeout=5, socket_timeout=5, socket_connect_timeout=3
        )
        return cls(Redis.from_pool(pool), RespClient(url))

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.resp.execute("GET", key)
        return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = await self.resp.execute("MGET", *keys)
        return values

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        if nx:
            done = await self.resp.execute("SET", key, value, "PX", _ms(ttl), "NX")
        else:
            done = await self.resp.execute("SET", key, value, "PX", _ms(ttl))
        return done is not None

    async def set_many(self, items: Mapping[str, bytes | str], ttl: float) -> None:
        if items:
            await self.resp.run(self._set_many, [*items], [_ms(ttl), *items.values()])

    async def delete(self, *keys: str) -> None:
        if keys:
            await self.resp.execute("DEL", *keys)

    async def delete_if_equals(self, key: str, value: bytes | str) -> bool:
        return bool(await self.resp.run(self._delete_if_equals, [key], [value]))

    async def extend_if_equals(self, key: str, value: bytes | str, ttl: float) -> bool:
        return bool(await self.resp.run(self._extend_if_equals, [key], [value, _ms(ttl)]))

    async def incr(self, key: str, ttl: float) -> int:
        return int(await self.resp.run(self._incr, [key], [_ms(ttl)]))

    async def enter(
        self,
        counter: str,
        counter_ttl: float,
        lock: str,
        owner: str,
        lock_ttl: float,
        reads: Sequence[str],
        claim: Stamp | None = None,
    ) -> Entry:
        if claim is None:
            keys = [counter, lock, *reads]
            args: list[Arg] = [_ms(counter_ttl), owner, _ms(lock_ttl), 0]
        else:
            keys = [counter, lock, claim.key, *reads]
            args = [_ms(counter_ttl), owner, _ms(lock_ttl), 1, claim.value, _ms(claim.ttl)]
        reply = await self.resp.run(self._enter, keys, args)
        if len(reply) > 3:
            return Entry(0, False, [], duplicate=reply[3])
        count, locked, values = reply
        return Entry(int(count), bool(locked), list(values))

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
        stamps: Sequence[Stamp] = (),
    ) -> None:
        keys = [lock, *writes, *deletes]
        args: list[Arg] = [owner, _ms(ttl), len(writes), len(stamps), *writes.values()]
        for stamp in stamps:
            keys.append(stamp.key)
            if not stamp.guard:
                args += [stamp.value, _ms(stamp.ttl), "a", ""]
            elif stamp.expect is None:
                args += [stamp.value, _ms(stamp.ttl), "n", ""]
            else:
                args += [stamp.value, _ms(stamp.ttl), "e", stamp.expect]
        await self.resp.run(self._leave, keys, args)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.wait_for(self.resp.execute("PING"), timeout=2))
        except Exception:
            return False

    async def close(self) -> None:
        await self.resp.close()
        await self.redis.aclose()
