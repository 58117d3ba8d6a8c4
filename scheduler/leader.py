"""Leader election: one process runs the cron jobs, through a lock in the KV store.

The leader holds `SET key token NX PX ttl` and renews it every ttl/4; the others try to take it
at the same pace. When the leader dies its lock expires, and another takes over at most
ttl + ttl/4 later (25 s with the default 20 s). With the in-memory store (no Redis) there is
one process, and it always wins.

A leader cut off from Redis for longer than the ttl may still believe it leads while another
has taken over, until its next renewal fails; jobs therefore keep what matters in the database
and push through idempotency keys, so a job that runs twice does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable

from bot.kv import KV

log = logging.getLogger(__name__)


class LeaderElector:
    def __init__(
        self,
        kv: KV,
        key: str,
        *,
        ttl: float = 20.0,
        interval: float | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._kv = kv
        self._key = key
        self.ttl = ttl
        self.interval = interval if interval is not None else ttl / 4
        # Who holds the lock, for an operator reading Redis: host, pid, and a random part.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self._on_change = on_change
        self._leader = False
        self._task: asyncio.Task[None] | None = None

    @property
    def is_leader(self) -> bool:
        return self._leader

    async def tick(self) -> bool:
        """Renew the lock if we hold it, else try to take it; returns whether we lead."""
        try:
            if self._leader:
                held = await self._kv.extend_if_equals(self._key, self.token, self.ttl)
                if not held:  # it expired (we stalled) and may be someone else's by now
                    held = await self._kv.set(self._key, self.token, self.ttl, nx=True)
            else:
                held = await self._kv.set(self._key, self.token, self.ttl, nx=True)
        except Exception:
            log.exception("leader lock: the KV store failed; stepping down")
            held = False
        self._set(held)
        return held

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info("scheduler: %s", "now the leader" if leader else "no longer the leader")
            if self._on_change is not None:
                self._on_change(leader)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="leader-elector")

    async def _loop(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def stop(self, *, release: bool = True) -> None:
        """Stop renewing; `release` hands the lock over at once instead of letting it expire."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if release and self._leader:
            with contextlib.suppress(Exception):
                await self._kv.delete_if_equals(self._key, self.token)
        self._set(False)
