"""A TCP proxy that can fail on purpose: an outage of PostgreSQL, Redis or WeChat, on demand.

The proxy sits between the bot and a server the tests must not disturb (the shared
PostgreSQL, for one). `down()` cuts every open connection and resets every new one until
`up()`, what a client sees while the server restarts. (It keeps listening: closing an asyncio
server while connections are being accepted can leave an accepted socket that nobody reads, a
silent hang no real restart produces.) The proxy runs on an event loop of its own, in a
thread, so a test can drive it from anywhere (a synchronous fixture, an async test).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopThread:
    """An asyncio loop in a daemon thread; `call` runs a coroutine function on it and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def call(self, func: Callable[..., Awaitable[T]], *args: Any, timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(_run(func, *args), self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def _run(func: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await func(*args)


class FaultProxy:
    """127.0.0.1:port → target_host:target_port, with `down()` and `up()`."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.connections = 0  # accepted since start, for tests that check a reconnect happened
        self._thread = LoopThread(f"fault-proxy-{self.port}")
        self._server: asyncio.Server | None = None
        self._up = False
        self._pipes: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread.call(self._listen)
        self.up()

    @property
    def is_up(self) -> bool:
        return self._up

    def up(self) -> None:
        self._up = True

    def down(self) -> None:
        """Drop every connection and reset new ones until `up()`."""
        self._thread.call(self._cut)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._thread.call(self._cut)
            self._thread.call(self._unlisten)
        self._thread.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _cut(self) -> None:
        self._up = False
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._up:
            writer.transport.abort()
            return
        self.connections += 1
        self._pipes.add(writer)  # cut with the rest even before the upstream side is open
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._pipes.discard(writer)
            writer.transport.abort()
            return
        if not self._up or writer not in self._pipes:  # went down meanwhile
            up_writer.transport.abort()
            writer.transport.abort()
            return
        self._pipes.add(up_writer)
        tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._pipes.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
