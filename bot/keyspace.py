"""Every key the bot keeps in Redis (or in memory), built in one place."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Keyspace:
    appid: str
    # Every key starts with it, and a message names a dozen keys: built once.
    _root: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_root", f"hc:{self.appid}")

    def state(self, openid: str) -> str:
        return f"{self._root}:{openid}:state"

    def data(self, openid: str) -> str:
        return f"{self._root}:{openid}:data"

    def profile(self, openid: str) -> str:
        return f"{self._root}:{openid}:profile"

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

    def scheduler_leader(self) -> str:
        return f"{self._root}:scheduler:leader"

    def outbox_paused_until(self) -> str:
        return f"{self._root}:outbox:paused_until"

    # -- access (issue 7) --------------------------------------------------------------------

    def duty(self, openid: str) -> str:
        """The place id a guard is on duty at (TTL: one shift)."""
        return f"{self._root}:{openid}:duty"

    def exit_next(self, openid: str) -> str:
        """Set by `出`/`out`: the next scan records an exit."""
        return f"{self._root}:{openid}:exit"

    def pass_card(self, person_id: int, locale: str) -> str:
        """The current pass code and its uploaded image's media id (TTL: the code's)."""
        return f"{self._root}:passcard:{person_id}:{locale}"

    def issued_code(self, tag: str) -> str:
        """A pass code this campus issued, by its keyed hash (TTL: the code's validity)."""
        return f"{self._root}:code:{tag}"

    def guard_tag(self) -> str:
        """The id of the WeChat user tag that shows guards the VERIFY scanner."""
        return f"{self._root}:menu:guard_tag"

    def guard_tagged(self, openid: str) -> str:
        return f"{self._root}:{openid}:guard_tagged"
