"""The lean Redis client under the failures it must survive: a private Redis server per test
(restarted, flushed, password-protected), never the shared one."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest

from bot.resp import RedisConnectionError, RedisError, RespClient, Script

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateRedis:
    port: int
    extra: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--enable-debug-command",
                "yes",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis(_free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(private_redis: PrivateRedis) -> AsyncIterator[RespClient]:
    c = RespClient(private_redis.url, command_timeout=2)
    yield c
    await c.close()


async def test_a_cancelled_caller_among_many_shifts_no_reply(client: RespClient) -> None:
    await asyncio.gather(*(client.execute("SET", f"k{i}", i) for i in range(50)))
    calls = [asyncio.ensure_future(client.execute("GET", f"k{i}")) for i in range(50)]
    await asyncio.sleep(0)
    for call in calls[::3]:
        call.cancel()
    for i, call in enumerate(calls):
        if i % 3:
            assert await call == str(i).encode()
    assert await client.execute("GET", "k7") == b"7"
    for connection in client._slots:
        assert connection is not None and not connection._waiters


async def test_commands_still_in_the_write_buffer_fail_when_the_connection_dies(
    client: RespClient,
) -> None:
    assert await client.execute("PING") == b"PONG"
    assert await client.execute("PING") == b"PONG"  # every slot open
    calls = [asyncio.ensure_future(client.execute("GET", f"k{i}")) for i in range(10)]
    await asyncio.sleep(0)  # queued in the coalescing buffer, the write not yet made
    for connection in client._slots:
        assert connection is not None
        assert connection._transport is not None
        connection._transport.abort()
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 3)
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert await client.execute("PING") == b"PONG"  # and the next call reconnects


async def test_a_script_flush_mid_traffic_is_answered_by_eval(client: RespClient) -> None:
    script = Script("return redis.call('INCR', KEYS[1])")
    await client.run(script, ["n"], [])
    calls = [client.run(script, ["n"], []) for _ in range(200)]
    flush = client.execute("SCRIPT", "FLUSH")
    results = await asyncio.gather(*calls[:100], flush, *calls[100:])
    assert results[100] == b"OK"
    assert await client.execute("GET", "n") == b"201"


async def test_a_redis_restart_fails_in_flight_calls_and_then_works_again(
    private_redis: PrivateRedis,
) -> None:
    client = RespClient(private_redis.url, command_timeout=2, connect_timeout=1)
    script = Script("return redis.call('SET', KEYS[1], ARGV[1])")
    try:
        assert await client.run(script, ["a"], ["1"]) == b"OK"
        slow = asyncio.ensure_future(client.execute("DEBUG", "SLEEP", "1"))
        await asyncio.sleep(0.1)
        private_redis.stop()
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(slow, 3)
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(client.execute("PING"), 3)
        private_redis.start()
        # A new server knows no scripts: EVALSHA's NOSCRIPT falls back to EVAL.
        assert await client.run(script, ["a"], ["2"]) == b"OK"
        assert await client.execute("GET", "a") == b"2"
    finally:
        await client.close()


async def test_an_error_inside_a_script_reply_leaves_the_stream_in_step(
    client: RespClient,
) -> None:
    nested = Script("return {1, redis.error_reply('BOOM inner'), 'x'}")
    reply = await client.run(nested, [], [])
    assert reply[0] == 1 and reply[2] == b"x"
    assert "BOOM" in str(reply[1])
    with pytest.raises(RedisError, match="BOOM top"):
        await client.run(Script("return redis.error_reply('BOOM top')"), [], [])
    with pytest.raises(RedisError):
        await client.run(Script("return redis.call('NOSUCHCOMMAND')"), [], [])
    assert await client.execute("PING") == b"PONG"


async def test_a_slow_but_alive_redis_is_not_failed_by_the_watchdog(
    client: RespClient,
) -> None:
    # command_timeout is 2 s: a 1.2 s command (and those queued behind it) must succeed.
    slow = client.execute("DEBUG", "SLEEP", "1.2")
    behind = [client.execute("PING") for _ in range(5)]
    assert await asyncio.gather(slow, *behind) == [b"OK"] + [b"PONG"] * 5


async def test_a_busy_event_loop_is_not_mistaken_for_a_silent_redis(client: RespClient) -> None:
    """A statement that holds the loop (an inline SQLite scan) longer than the command
    timeout, in the same turn as a command was sent: Redis did nothing wrong."""
    assert await client.execute("PING") == b"PONG"
    assert await client.execute("PING") == b"PONG"
    await asyncio.sleep(1.1)  # the watchdog is sleeping: it wakes during the stall

    async def blocker() -> None:
        time.sleep(2.5)  # noqa: ASYNC251 - the point: a loop held longer than the timeout

    calls = [asyncio.ensure_future(client.execute("PING")) for _ in range(4)]
    stall = asyncio.ensure_future(blocker())
    results = await asyncio.gather(*calls, stall, return_exceptions=True)
    assert results[:4] == [b"PONG"] * 4


async def test_password_username_and_database_come_from_the_url() -> None:
    server = PrivateRedis(_free_port(), ["--requirepass", "p@ss:w/rd%x"])
    server.start()
    try:
        url = f"redis://:p%40ss%3Aw%2Frd%25x@127.0.0.1:{server.port}/3"
        client = RespClient(url, size=1)
        try:
            await client.execute("SET", "where", "here")
            assert await client.execute("CLIENT", "INFO") is not None
            info = (await client.execute("CLIENT", "INFO")).decode()
            assert " db=3 " in info
            await client.execute("ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+@all")
        finally:
            await client.close()
        alice = RespClient(f"redis://alice:s3cret@127.0.0.1:{server.port}/?db=2", size=1)
        try:
            info = (await alice.execute("CLIENT", "INFO")).decode()
            assert " user=alice " in info and " db=2 " in info
        finally:
            await alice.close()
        wrong = RespClient(f"redis://:nope@127.0.0.1:{server.port}/0", size=1)
        try:
            with pytest.raises(RedisError, match=r"WRONGPASS|invalid"):
                await wrong.execute("PING")
        finally:
            await wrong.close()
    finally:
        server.stop()


async def test_waiters_do_not_grow_under_cancellations(client: RespClient) -> None:
    for _ in range(20):
        calls = [asyncio.ensure_future(client.execute("PING")) for _ in range(50)]
        await asyncio.sleep(0)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
    assert await client.execute("PING") == b"PONG"
    assert await client.execute("PING") == b"PONG"
    await asyncio.sleep(0.05)
    assert sum(len(c._waiters) for c in client._slots if c is not None) == 0
