"""Every key the bot keeps in Redis (or in memory), built in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keyspace:
    appid: str

    @property
    def _root(self) -> str:
        return f"hc:{self.appid}"

    def state(self, openid: str) -> str:
        return f"{self._root}:{openid}:state"

    def data(self, openid: str) -> str:
        return f"{self._root}:{openid}:data"

    def lock(self, openid: str) -> str:
        return f"{self._root}:{openid}:lock"

    def rate(self, openid: str, window: int) -> str:
        return f"{self._root}:{openid}:rate:{window}"

    def dedup(self, message_key: str) -> str:
        return f"{self._root}:dedup:{message_key}"

    def bind_failures(self, kind: str, subject: str, window: int) -> str:
        # subject is an openid or a keyed hash of a person number, never the number itself
        return f"{self._root}:bindfail:{kind}:{subject}:{window}"

    def access_token(self) -> str:
        return f"{self._root}:access_token"

    def access_token_lock(self) -> str:
        return f"{self._root}:access_token:lock"
