"""Messages that cannot ride in the passive reply: late answers and follow-ups.

They go out as customer-service messages from background tasks that the app awaits on
shutdown. (Pushes that must survive a crash go through the outbox instead.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from bot.replies import Image, Text
from bot.wechat.errors import WeChatError

log = logging.getLogger(__name__)


class CustomerService(Protocol):
    async def send_text(self, openid: str, content: str) -> object: ...

    async def send_image(self, openid: str, media_id: str) -> object: ...


class Courier:
    def __init__(self, api: CustomerService, *, delay: float = 0.3) -> None:
        self._api = api
        # Follow-ups wait a moment so the passive reply reaches the phone first.
        self._delay = delay
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, openid: str, messages: Sequence[Text | Image], *, wait: bool = True) -> None:
        if not messages:
            return
        task = asyncio.create_task(self._send(openid, messages, self._delay if wait else 0))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, openid: str, messages: Sequence[Text | Image], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        for message in messages:
            try:
                if isinstance(message, Text):
                    await self._api.send_text(openid, message.content)
                else:
                    await self._api.send_image(openid, message.media_id)
            except WeChatError as exc:
                log.warning(
                    "customer-service message not sent: %s",
                    getattr(exc, "errcode", type(exc).__name__),
                )
                return

    async def drain(self, timeout: float = 10) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
