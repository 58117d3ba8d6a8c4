"""A lean Redis client for the message path: pipelined RESP over a few shared connections.

Every message costs two Redis round trips (bot/kv.py `enter` and `leave`). With redis-py's
asyncio client each command also pays for a pool checkout, a retry wrapper and a stream
reader, which on one core cost more than the rest of the message together. Here a command is
one write to a shared connection and one future resolved by hiredis's parser: requests from
many messages are in flight on one socket at once and their replies come back in order.

Only what the state store needs: commands as bulk strings, Lua scripts by SHA with a fallback
to EVAL, AUTH/SELECT from the URL, TLS for `rediss://`, reconnection, and a watchdog that
fails a connection whose oldest request has waited longer than the command timeout (a stalled
server must become an error the caller can answer politely, not a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.connection import parse_url

Arg = bytes | str | int


class RedisError(Exception):
    """Redis answered with an error, or the connection failed; the message says which."""


class RedisConnectionError(RedisError, ConnectionError):
    pass


def encode(args: tuple[Arg, ...]) -> bytes:
    """A command as RESP bulk strings (UTF-8 for str), by hiredis in C."""
    command: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # the stub wants a 1-tuple
    return command


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reader = hiredis.Reader()
        self._waiters: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        self.closed = False
        # The watchdog's view: the request it saw at the head, and in how many of its rounds.
        self.watched: asyncio.Future[Any] | None = None
        self.rounds = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's do not subclass asyncio.Transport).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiters = self._waiters
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(RedisConnectionError(f"protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiters:
                self.fail(RedisConnectionError("a reply nobody asked for"))
                return
            future, _ = waiters.popleft()
            if future.done():  # the caller gave up (cancelled); the reply is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(RedisError(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection lost: {exc or 'closed by the server'}"))

    def send(self, payload: bytes) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection closed")
        future = self._loop.create_future()
        self._waiters.append((future, self._loop.time()))
        # Commands issued in one turn of the event loop leave in one write (one syscall).
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(payload)
        return future

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(outgoing))

    def oldest(self) -> tuple[asyncio.Future[Any], float] | None:
        return self._waiters[0] if self._waiters else None

    def close(self) -> None:
        self.fail(RedisConnectionError("connection closed"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()
        waiters, self._waiters = self._waiters, deque()
        for future, _ in waiters:
            if not future.done():
                future.set_exception(error)


def _retrieve(task: asyncio.Task[_Connection]) -> None:
    if not task.cancelled():
        task.exception()  # seen here; the callers that awaited it got it too


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


class RespClient:
    """Commands over `size` shared connections, opened on first use and again after a loss.

    One by default: Redis runs commands one after another anyway, and on one connection all
    the commands of a turn of the loop leave in one write and their replies come back in
    one read, and a user's commands arrive in the order they were issued. Against two
    connections, a guard scan took 3–20% less CPU under the verify benchmark's load (six
    A/B pairs, builds alternated, bench/README.md)."""

    def __init__(
        self,
        url: str,
        *,
        size: int = 1,
        connect_timeout: float = 3.0,
        command_timeout: float = 5.0,
    ) -> None:
        options = parse_url(url)
        self._host = str(options.get("host", "127.0.0.1"))
        self._port = int(options.get("port", 6379))
        self._path = options.get("path")  # unix:// URLs
        self._db = int(options.get("db", 0) or 0)
        self._username = options.get("username")
        self._password = options.get("password")
        self._ssl = url.startswith("rediss://")
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._slots: list[_Connection | None] = [None] * size
        self._opening: list[asyncio.Task[_Connection] | None] = [None] * size
        self._next = 0
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    async def execute(self, *args: Arg) -> Any:
        connection = await self._connection()
        return await connection.send(encode(args))

    async def run(self, script: Script, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """EVALSHA, loading the script with EVAL the first time a server lacks it."""
        try:
            return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except RedisError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script.source, len(keys), *keys, *args)

    async def close(self) -> None:
        """Close the connections; the client takes no more commands (none reopens one that
        nobody would close: a send still in flight at shutdown gets an error instead)."""
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        for opening in self._opening:
            if opening is not None:
                opening.cancel()
        for i, connection in enumerate(self._slots):
            if connection is not None:
                connection.close()
            self._slots[i] = None

    async def _connection(self) -> _Connection:
        if self._closed:
            raise RedisConnectionError("the Redis client is closed")
        i = self._next
        self._next = (i + 1) % len(self._slots)
        connection = self._slots[i]
        if connection is not None and not connection.closed:
            return connection
        opening = self._opening[i]
        if opening is None:  # one opener per slot, which no caller's cancellation stops
            opening = asyncio.get_running_loop().create_task(self._open_slot(i))
            opening.add_done_callback(_retrieve)
            self._opening[i] = opening
        return await asyncio.shield(opening)

    async def _open_slot(self, i: int) -> _Connection:
        try:
            connection = await self._open()
        except RedisError:
            raise
        except Exception as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc!r}") from exc
        finally:
            self._opening[i] = None
        self._slots[i] = connection
        self._start_watchdog()
        return connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self._ssl else None
        if self._path:
            connect = loop.create_unix_connection(lambda: _Connection(loop), str(self._path))
        else:
            connect = loop.create_connection(
                lambda: _Connection(loop), self._host, self._port, ssl=context
            )
        _, connection = await asyncio.wait_for(connect, self._connect_timeout)
        try:
            if self._password:
                auth: tuple[Arg, ...] = (
                    ("AUTH", self._username, self._password)
                    if self._username
                    else ("AUTH", self._password)
                )
                await asyncio.wait_for(connection.send(encode(auth)), self._connect_timeout)
            if self._db:
                await asyncio.wait_for(
                    connection.send(encode(("SELECT", self._db))), self._connect_timeout
                )
        except BaseException:
            connection.close()
            raise
        return connection

    def _start_watchdog(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        period = min(1.0, self._command_timeout / 2)
        # Time is counted in this task's rounds as well as on the clock: a loop held up by
        # other work (an inline SQLite scan) is one round, not a Redis that stopped answering.
        rounds = math.ceil(self._command_timeout / period)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in self._slots:
                if connection is None or connection.closed:
                    continue
                oldest = connection.oldest()
                if oldest is None or oldest[0] is not connection.watched:
                    connection.watched = None if oldest is None else oldest[0]
                    connection.rounds = 0
                    continue
                connection.rounds += 1
                if connection.rounds >= rounds and now - oldest[1] > self._command_timeout:
                    connection.fail(RedisConnectionError("Redis did not answer in time"))
