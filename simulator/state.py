"""Everything the emulated WeChat remembers, in memory, in one object stored on the app."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Coroutine, Iterable
from typing import Any

from simulator.callback import CallbackClient
from simulator.chatlog import ChatLog
from simulator.clock import Clock, OffsetClock
from simulator.config import SimulatorConfig
from simulator.faults import Faults, QueuedError
from simulator.media import MediaStore
from simulator.menus import MenuStore
from simulator.personas import Persona
from simulator.qr import QrStore
from simulator.quotas import DailyQuotas
from simulator.tags import TagBook
from simulator.tokens import TokenStore
from simulator.users import UserBook


class SimulatorState:
    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = OffsetClock(clock)
        self.tokens = TokenStore(config.appid, config.secret, self.clock)
        self.users = UserBook(self.clock)
        self.tags = TagBook()
        self.menus = MenuStore()
        self.media = MediaStore(self.clock)
        self.qr = QrStore(self.clock)
        self.log = ChatLog(self.clock)
        self.faults = Faults()
        self.quotas = DailyQuotas(self.clock)
        self.calls: Counter[str] = Counter()
        self.callback = CallbackClient(config, self.clock)
        self.personas: dict[str, Persona] = {}  # by openid, from the last successful fetch
        # How long after a template send its TEMPLATESENDJOBFINISH event goes to the bot.
        self.template_report_delay = 0.5
        self.template_sends: dict[tuple[str, str], tuple[int, float]] = {}
        # MsgIds are unique 64-bit numbers that grow, like WeChat's.
        self._msg_ids = itertools.count(int(self.clock.time()) * 1_000_000)
        self._tasks: set[asyncio.Task[Any]] = set()

    def next_msg_id(self) -> int:
        return next(self._msg_ids)

    def inject(
        self,
        *,
        latency_ms: int | None = None,
        path_latency_ms: dict[str, int] | None = None,
        error_rate: float | None = None,
        error_code: int | None = None,
        error_rate_paths: Iterable[str] | None = None,
        errors: Iterable[QueuedError] = (),
    ) -> None:
        """Fault injection from Python, like `POST api/_control`; only what is given changes."""
        self.faults.configure(
            latency_ms=latency_ms,
            path_latency_ms=path_latency_ms,
            error_rate=error_rate,
            error_code=error_code,
            error_rate_paths=error_rate_paths,
            errors=errors,
        )

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run work in the background; it is cancelled when the app stops."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for background work (tests use this instead of sleeping)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def start(self) -> None:
        await self.callback.start()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.log.notify_all("close")
        await self.callback.close()
