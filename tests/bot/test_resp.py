"""The lean Redis client: replies in order, errors as errors, and failures that end, not hang."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bot.resp import RedisConnectionError, RedisError, RespClient, Script, encode


def test_commands_are_encoded_as_bulk_strings() -> None:
    assert (
        encode(("SET", "k", b"\x00v", 5))
        == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$1\r\n5\r\n"
    )
    assert encode(("GET", "键")) == b"*2\r\n$3\r\nGET\r\n$3\r\n\xe9\x94\xae\r\n"


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RespClient]:
    c = RespClient(redis_url)
    yield c
    await c.close()


@pytest.mark.redis
async def test_many_concurrent_commands_get_their_own_replies(client: RespClient) -> None:
    prefix = f"test:resp:{secrets.token_hex(4)}:"
    await asyncio.gather(
        *(client.execute("SET", f"{prefix}{i}", i, "PX", 60_000) for i in range(500))
    )
    values = await asyncio.gather(*(client.execute("GET", f"{prefix}{i}") for i in range(500)))
    assert values == [str(i).encode() for i in range(500)]
    await client.execute("DEL", *(f"{prefix}{i}" for i in range(500)))


@pytest.mark.redis
async def test_errors_are_raised_and_the_connection_stays_usable(client: RespClient) -> None:
    key = f"test:resp:{secrets.token_hex(4)}"
    await client.execute("SET", key, "text", "PX", 60_000)
    with pytest.raises(RedisError, match="WRONGTYPE"):
        await client.execute("LPUSH", key, "x")
    assert await client.execute("GET", key) == b"text"
    await client.execute("DEL", key)


@pytest.mark.redis
async def test_a_script_unknown_to_the_server_is_loaded_once(client: RespClient) -> None:
    script = Script(f"return ARGV[1] .. '{secrets.token_hex(4)}'")  # new to this server
    first = await client.run(script, [], ["a"])
    assert first.startswith(b"a")
    assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]
    assert await client.run(script, [], ["b"]) == b"b" + first[1:]


@pytest.mark.redis
async def test_a_cancelled_caller_does_not_shift_the_replies(client: RespClient) -> None:
    key = f"test:resp:{secrets.token_hex(4)}"
    await client.execute("SET", key, "mine", "PX", 60_000)
    slow = asyncio.ensure_future(client.execute("DEBUG", "SLEEP", "0.05"))
    await asyncio.sleep(0)
    slow.cancel()
    # The next command on either connection still gets its own reply.
    assert [await client.execute("GET", key) for _ in range(4)] == [b"mine"] * 4
    await client.execute("DEL", key)


class _Server:
    """A stand-in Redis on a free port that, when closed, also closes the connections it
    accepted (asyncio.Server leaves them open, and uvloop then refuses to close the loop)."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"redis://127.0.0.1:{port}/0"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._handler(reader, writer)
        finally:
            writer.close()

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _server(handler: Handler) -> tuple[_Server, str]:
    server = await _Server(handler).start()
    return server, server.url


async def _nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    pass


async def test_a_lost_connection_fails_its_requests_and_the_next_call_reconnects() -> None:
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        served += 1
        await reader.read(100)
        if served == 1:
            writer.close()  # the first connection dies mid-request
            return
        writer.write(b"+PONG\r\n")
        await writer.drain()
        await reader.read(100)

    server, url = await _server(handler)
    client = RespClient(url, size=1)
    try:
        with pytest.raises(RedisConnectionError):
            await client.execute("PING")
        assert await client.execute("PING") == b"PONG"
    finally:
        await client.close()
        await server.close()


async def test_a_server_that_stops_answering_becomes_an_error_not_a_hang() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # reads nothing, answers nothing

    server, url = await _server(handler)
    client = RespClient(url, size=1, command_timeout=0.2)
    try:
        with pytest.raises(RedisConnectionError, match="did not answer"):
            await asyncio.wait_for(client.execute("PING"), 3)
    finally:
        await client.close()
        await server.close()


async def test_nothing_listening_is_a_connection_error() -> None:
    server, url = await _server(_nothing)
    await server.close()
    client = RespClient(url, size=1, connect_timeout=1)
    try:
        with pytest.raises(RedisConnectionError, match="cannot connect"):
            await client.execute("PING")
    finally:
        await client.close()


async def test_a_closed_client_takes_no_more_commands_and_opens_nothing() -> None:
    """A push still in flight at shutdown must get an error, not a new connection that
    nobody would close (uvloop then refuses to close the loop)."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while await reader.read(100):
            writer.write(b"+PONG\r\n")
            await writer.drain()
        writer.close()

    server, url = await _server(handler)
    client = RespClient(url, size=1)
    try:
        assert await client.execute("PING") == b"PONG"
        await client.close()
        with pytest.raises(RedisConnectionError, match="closed"):
            await client.execute("PING")
        assert connections == 1
    finally:
        await server.close()
