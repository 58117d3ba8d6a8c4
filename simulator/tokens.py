"""Access tokens as WeChat issues and checks them (/cgi-bin/token and /cgi-bin/stable_token)."""

from __future__ import annotations

import re
import secrets
from collections import deque
from dataclasses import dataclass

from simulator.clock import Clock
from simulator.errors import ApiError

LIFETIME = 7200
# After /cgi-bin/token hands out a new token, the previous one keeps working this long.
OVERLAP = 300
# stable_token hands out the same token until it has less than this left.
STABLE_RENEW_BEFORE = 300
FORCE_REFRESH_SPACING = 30
FORCE_REFRESH_PER_DAY = 20

_SHAPE = re.compile(r"[0-9]+_[A-Za-z0-9_-]{32,}")


@dataclass(slots=True)
class _Grant:
    expires_at: float
    revoked: bool = False


class TokenStore:
    def __init__(self, appid: str, secret: str, clock: Clock) -> None:
        self._appid = appid
        self._secret = secret
        self._clock = clock
        self._grants: dict[str, _Grant] = {}
        self._serial = 80
        self._current: str | None = None  # the latest /cgi-bin/token token
        self._stable: str | None = None  # stable_token keeps its own, as WeChat does
        self._forced: deque[float] = deque()

    def check_credentials(self, grant_type: object, appid: object, secret: object) -> None:
        if grant_type != "client_credential":
            raise ApiError(40002, f"grant_type {grant_type!r}")
        if not appid:
            raise ApiError(41002)
        if not secret:
            raise ApiError(41004)
        if not isinstance(appid, str) or not secrets.compare_digest(appid, self._appid):
            raise ApiError(40013, f"appid {appid!r}")
        if not isinstance(secret, str) or not secrets.compare_digest(
            secret.encode(), self._secret.encode()
        ):
            raise ApiError(40125)

    def issue(self) -> tuple[str, int]:
        """A new token, as /cgi-bin/token does on every call; the previous one fades out."""
        now = self._clock.time()
        if self._current is not None:
            old = self._grants[self._current]
            old.expires_at = min(old.expires_at, now + OVERLAP)
        self._current = self._new(now)
        return self._current, LIFETIME

    def stable(self, force_refresh: bool) -> tuple[str, int]:
        now = self._clock.time()
        if force_refresh:
            self._spend_force_refresh(now)
            if self._stable is not None:
                # Forcing a refresh invalidates the previous stable token at once.
                self._grants[self._stable].revoked = True
            self._stable = None
        if self._stable is not None:
            left = self._grants[self._stable].expires_at - now
            if left > STABLE_RENEW_BEFORE:
                return self._stable, int(left)
        self._stable = self._new(now)
        return self._stable, LIFETIME

    def verify(self, value: str | None) -> None:
        if not value:
            raise ApiError(41001)
        if not _SHAPE.fullmatch(value):
            raise ApiError(40014, "malformed access_token")
        grant = self._grants.get(value)
        if grant is None or grant.revoked:
            raise ApiError(40001)
        if self._clock.time() >= grant.expires_at:
            raise ApiError(42001)

    def _spend_force_refresh(self, now: float) -> None:
        while self._forced and now - self._forced[0] >= 86400:
            self._forced.popleft()
        if self._forced and now - self._forced[-1] < FORCE_REFRESH_SPACING:
            raise ApiError(45011, f"force_refresh at most once per {FORCE_REFRESH_SPACING} s")
        if len(self._forced) >= FORCE_REFRESH_PER_DAY:
            raise ApiError(45009, f"force_refresh at most {FORCE_REFRESH_PER_DAY} times a day")
        self._forced.append(now)

    def _new(self, now: float) -> str:
        self._serial += 1
        value = f"{self._serial}_{secrets.token_urlsafe(96)}"
        self._grants[value] = _Grant(expires_at=now + LIFETIME)
        return value
