"""The access token, shared by every process through the KV store and refreshed by one at a time.

WeChat wants a single refresher per account, and processes racing to refresh is the classic
bug (wechatpy #334): a KV lock lets one process fetch while the others wait for its token, and
an asyncio lock does the same for the coroutines of one process.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets

import aiohttp

from bot.clock import Clock, SystemClock
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.settings import Settings
from bot.wechat.api import network_error, request_json

log = logging.getLogger(__name__)

ENDPOINT = "/cgi-bin/stable_token"


class AccessTokenManager:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        kv: KV,
        keyspace: Keyspace,
        clock: Clock | None = None,
        *,
        margin: float = 300.0,
        lock_ttl: float = 10.0,
        wait_timeout: float = 12.0,
        poll_interval: float = 0.05,
        request_timeout: float = 8.0,
    ) -> None:
        """`margin`: refresh this long before WeChat's expiry.

        `request_timeout` stays below `lock_ttl` so the lock outlives the request it guards;
        `wait_timeout` exceeds it so a waiter takes over from a refresher that died.
        """
        self._session = session
        self._settings = settings
        self._kv = kv
        self._key = keyspace.access_token()
        self._lock_key = keyspace.access_token_lock()
        self._clock = clock or SystemClock()
        self._margin = margin
        self._lock_ttl = lock_ttl
        self._wait_timeout = wait_timeout
        self._poll_interval = poll_interval
        # Polls are counted too, so a frozen test clock can't make the wait endless.
        self._max_polls = max(1, math.ceil(wait_timeout / poll_interval))
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._url = settings.wechat_api_base.rstrip("/") + ENDPOINT
        self._local = asyncio.Lock()

    async def get(self, force_refresh: bool = False) -> str:
        """The current token: cached, or fetched by one refresher for all processes.

        `force_refresh` skips the cache and asks WeChat for a new token, which invalidates the
        old one after ~5 minutes; WeChat allows it 20 times a day, so it is for operators.
        """
        seen = await self._cached()
        if seen is not None and not force_refresh:
            return seen
        async with self._local:
            # Queued behind another coroutine of this process: its refresh may serve us.
            if (current := await self._usable(seen, force_refresh)) is not None:
                return current
            return await self._refresh_shared(seen, force_refresh)

    async def invalidate(self, bad_token: str) -> None:
        """Drop the cached token if it is still `bad_token`.

        Several coroutines that got 40001 with the same token drop it once; one holding an
        older token can't delete the fresh one another has just stored.
        """
        if await self._kv.delete_if_equals(self._key, bad_token):
            log.info("dropped the access token WeChat rejected")

    async def _cached(self) -> str | None:
        value = await self._kv.get(self._key)
        return value.decode() if value else None

    async def _usable(self, seen: str | None, force_refresh: bool) -> str | None:
        """The cached token if it serves this request, else None."""
        current = await self._cached()
        # A forced refresh is served only by a token newer than the one it wanted replaced.
        if current is not None and (not force_refresh or current != seen):
            return current
        return None

    async def _refresh_shared(self, seen: str | None, force_refresh: bool) -> str:
        owner = secrets.token_hex(16)
        deadline = self._clock.monotonic() + self._wait_timeout
        polls = 0
        while True:
            if await self._kv.set(self._lock_key, owner, ttl=self._lock_ttl, nx=True):
                try:
                    # Another process may have stored a token between our read and our lock.
                    if (current := await self._usable(seen, force_refresh)) is not None:
                        return current
                    return await self._fetch_and_store(force_refresh)
                finally:
                    await self._kv.delete_if_equals(self._lock_key, owner)
            polls += 1
            if polls > self._max_polls or self._clock.monotonic() >= deadline:
                raise network_error(
                    ENDPOINT,
                    "token_wait",
                    f"no access token after waiting {self._wait_timeout:g} s "
                    "for another process to refresh it",
                )
            await asyncio.sleep(self._poll_interval)
            if (current := await self._usable(seen, force_refresh)) is not None:
                return current

    async def _fetch_and_store(self, force_refresh: bool) -> str:
        payload = await request_json(
            self._session,
            "POST",
            self._url,
            ENDPOINT,
            client_timeout=self._timeout,
            json_body={
                "grant_type": "client_credential",
                "appid": self._settings.wechat_appid,
                "secret": self._settings.wechat_secret,
                "force_refresh": force_refresh,
            },
        )
        token = payload.get("access_token")
        expires_in = payload.get("expires_in")
        if not isinstance(token, str) or not token:
            raise network_error(ENDPOINT, "invalid_response", "answer has no 'access_token'")
        if not isinstance(expires_in, int) or expires_in <= 0:
            raise network_error(
                ENDPOINT, "invalid_response", f"answer has a bad 'expires_in' {expires_in!r}"
            )
        # Refresh `margin` early; a token that short-lived we keep for half its life instead.
        ttl = expires_in - self._margin if expires_in > 2 * self._margin else expires_in / 2
        await self._kv.set(self._key, token, ttl=ttl)
        log.info("access token refreshed; cached for %d s", ttl)
        return token
