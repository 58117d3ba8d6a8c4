"""Conversation state (a named step and its data) with a TTL, kept in the KV store.

The data holds what a flow has asked so far (a registration's name, ID number and phone), so
with a vault (the app always gives one) it is stored encrypted with the data key and bound to
its user: a copy moved to another user's key, an entry from before encryption or one that
does not decrypt all read as no data (the flow restarts).
"""

from __future__ import annotations

import json
from typing import Any

from bot.keyspace import Keyspace
from bot.kv import KV
from campus.secrets import CannotDecrypt, DataVault


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
    def __init__(self, kv: KV, keys: Keyspace, ttl: float, vault: DataVault | None = None) -> None:
        self._kv = kv
        self._keys = keys
        self.ttl = ttl
        self._vault = vault

    def keys(self, openid: str) -> list[str]:
        """The keys a conversation lives in (read in the message's first round trip)."""
        return [self._keys.state(openid), self._keys.data(openid)]

    def parse(self, openid: str, step: bytes | None, data: bytes | None) -> Conversation:
        if step is None:
            return Conversation()
        return Conversation(step.decode(), self._data(openid, data) if data else {})

    def _data(self, openid: str, stored: bytes) -> dict[str, Any]:
        # A corrupted record restarts the flow rather than failing every message.
        try:
            if self._vault is None:
                payload = json.loads(stored)
            else:
                sealed = json.loads(self._vault.decrypt(stored))
                payload = sealed.get("data") if sealed.get("openid") == openid else {}
        except (ValueError, CannotDecrypt, AttributeError):
            return {}
        return payload if isinstance(payload, dict) else {}

    def changes(self, openid: str, conv: Conversation) -> tuple[dict[str, str], list[str]]:
        """What to write and what to delete for a conversation a handler has moved."""
        if not conv.changed:
            return {}, []
        if conv.step is None:
            return {}, self.keys(openid)
        if self._vault is None:
            data = json.dumps(conv.data, ensure_ascii=False)
        else:
            sealed = json.dumps({"openid": openid, "data": conv.data}, ensure_ascii=False)
            data = self._vault.encrypt(sealed).decode()
        return {self._keys.state(openid): conv.step, self._keys.data(openid): data}, []

    async def load(self, openid: str) -> Conversation:
        step, data = await self._kv.get_many(self.keys(openid))
        return self.parse(openid, step, data)

    async def save(self, openid: str, conv: Conversation) -> None:
        writes, deletes = self.changes(openid, conv)
        if writes:
            await self._kv.set_many(writes, self.ttl)
        if deletes:
            await self._kv.delete(*deletes)
