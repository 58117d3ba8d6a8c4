"""Conversation state (a named step and its data) with a TTL, kept in the KV store."""

from __future__ import annotations

import json
from typing import Any

from bot.keyspace import Keyspace
from bot.kv import KV


class Conversation:
    """One user's place in a multi-step flow; handlers move it with goto() and finish()."""

    __slots__ = ("_changed", "data", "step")

    def __init__(self, step: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.step = step
        self.data: dict[str, Any] = data or {}
        self._changed = False

    def goto(self, step: str, **data: Any) -> None:
        self.step = step
        self.data.update(data)
        self._changed = True

    def finish(self) -> None:
        self.step = None
        self.data = {}
        self._changed = True

    @property
    def active(self) -> bool:
        return self.step is not None

    @property
    def changed(self) -> bool:
        return self._changed


class StateStore:
    def __init__(self, kv: KV, keys: Keyspace, ttl: float) -> None:
        self._kv = kv
        self._keys = keys
        self.ttl = ttl

    async def load(self, openid: str) -> Conversation:
        step, data = await self._kv.get_many([self._keys.state(openid), self._keys.data(openid)])
        if step is None:
            return Conversation()
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {}  # a corrupted record restarts the flow rather than failing every message
        return Conversation(step.decode(), payload if isinstance(payload, dict) else {})

    async def save(self, openid: str, conv: Conversation) -> None:
        if conv.step is None:
            await self._kv.delete(self._keys.state(openid), self._keys.data(openid))
            return
        await self._kv.set_many(
            {
                self._keys.state(openid): conv.step,
                self._keys.data(openid): json.dumps(conv.data, ensure_ascii=False),
            },
            self.ttl,
        )
