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

    def keys(self, openid: str) -> list[str]:
        """The keys a conversation lives in (read in the message's first round trip)."""
        return [self._keys.state(openid), self._keys.data(openid)]

    @staticmethod
    def parse(step: bytes | None, data: bytes | None) -> Conversation:
        if step is None:
            return Conversation()
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {}  # a corrupted record restarts the flow rather than failing every message
        return Conversation(step.decode(), payload if isinstance(payload, dict) else {})

    def changes(self, openid: str, conv: Conversation) -> tuple[dict[str, str], list[str]]:
        """What to write and what to delete for a conversation a handler has moved."""
        if not conv.changed:
            return {}, []
        if conv.step is None:
            return {}, self.keys(openid)
        return {
            self._keys.state(openid): conv.step,
            self._keys.data(openid): json.dumps(conv.data, ensure_ascii=False),
        }, []

    async def load(self, openid: str) -> Conversation:
        step, data = await self._kv.get_many(self.keys(openid))
        return self.parse(step, data)

    async def save(self, openid: str, conv: Conversation) -> None:
        writes, deletes = self.changes(openid, conv)
        if writes:
            await self._kv.set_many(writes, self.ttl)
        if deletes:
            await self._kv.delete(*deletes)
