"""Shared fixtures: real Redis and PostgreSQL when they answer (required under CI=true)."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pytest

from bot.kv import KV, MemoryKV, RedisKV

IN_CI = os.environ.get("CI", "").lower() == "true"
DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


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


@pytest.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KV]:
    """The KV contract runs over both implementations."""
    if request.param == "memory":
        yield MemoryKV()
        return
    url = request.getfixturevalue("redis_url")
    store = RedisKV.from_url(url)
    yield store
    await store.redis.flushdb()
    await store.close()
