"""Shared fixtures: real Redis and PostgreSQL when they answer (required under CI=true)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.kv import KV, Entry, MemoryKV, RedisKV, Stamp

IN_CI = os.environ.get("CI", "").lower() == "true"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
# The loop the async tests run on: asyncio's by default; `uvloop`, as `healthbot serve` runs
# in production (bot/loop.py), for the second pass scripts/test makes.
TEST_LOOP = os.environ.get("HEALTHBOT_TEST_EVENT_LOOP", "asyncio")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    from bot.loop import new_loop

    if TEST_LOOP not in ("asyncio", "uvloop"):
        raise pytest.UsageError("HEALTHBOT_TEST_EVENT_LOOP must be asyncio or uvloop")
    return {TEST_LOOP: lambda: new_loop(TEST_LOOP)}


def _answers(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 1
        ):
            return True
    except OSError:
        return False


def _service_url(env: str, default: str, port: int, what: str) -> str:
    url = os.environ.get(env)
    if url:
        return url
    if _answers(default, port):
        return default
    message = f"{what} is not answering on {default} and {env} is unset"
    if IN_CI:
        pytest.fail(f"{message}: under CI=true a missing service is a failure", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return _service_url("HEALTHBOT_TEST_REDIS_URL", DEFAULT_REDIS, 6379, "Redis")


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    return _service_url("HEALTHBOT_TEST_DATABASE_URL", DEFAULT_PG, 5432, "PostgreSQL")


def _admin_sql(server_url: str, sql: str) -> None:
    """Run one statement on the server's `postgres` database, from any context."""
    import asyncpg

    parts = urlsplit(server_url.replace("+asyncpg", ""))
    admin = urlunsplit(parts._replace(path="/postgres"))

    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # A thread of its own: fixtures may be set up while an event loop is running.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"hb_test_{secrets.token_hex(6)}"
    _admin_sql(postgres_server_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(postgres_server_url)._replace(path=f"/{name}"))
    finally:
        _admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PrefixedKV:
    """A real RedisKV whose keys carry a per-test prefix, so concurrent runs never collide."""

    def __init__(self, inner: RedisKV, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> bytes | None:
        return await self.inner.get(self._k(key))

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self.inner.get_many([self._k(k) for k in keys])

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        return await self.inner.set(self._k(key), value, ttl, nx=nx)

    async def set_many(self, items: Mapping[str, bytes | str], ttl: float) -> None:
        await self.inner.set_many({self._k(k): v for k, v in items.items()}, ttl)

    async def delete(self, *keys: str) -> None:
        await self.inner.delete(*(self._k(k) for k in keys))

    async def delete_if_equals(self, key: str, value: bytes | str) -> bool:
        return await self.inner.delete_if_equals(self._k(key), value)

    async def extend_if_equals(self, key: str, value: bytes | str, ttl: float) -> bool:
        return await self.inner.extend_if_equals(self._k(key), value, ttl)

    async def incr(self, key: str, ttl: float) -> int:
        return await self.inner.incr(self._k(key), ttl)

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
        return await self.inner.enter(
            self._k(counter),
            counter_ttl,
            self._k(lock),
            owner,
            lock_ttl,
            [self._k(k) for k in reads],
            None if claim is None else Stamp(self._k(claim.key), claim.value, claim.ttl),
        )

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
        stamps: Sequence[Stamp] = (),
    ) -> None:
        await self.inner.leave(
            self._k(lock),
            owner,
            {self._k(k): v for k, v in writes.items()},
            ttl,
            [self._k(k) for k in deletes],
            [dataclasses.replace(s, key=self._k(s.key)) for s in stamps],
        )

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        keys = [k async for k in self.inner.redis.scan_iter(match=self.prefix + "*")]
        if keys:
            await self.inner.redis.delete(*keys)
        await self.inner.close()


@pytest.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KV]:
    """The KV contract runs over both implementations."""
    if request.param == "memory":
        yield MemoryKV()
        return
    url = request.getfixturevalue("redis_url")
    store = PrefixedKV(RedisKV.from_url(url), f"test:{secrets.token_hex(4)}:")
    yield store
    await store.close()
