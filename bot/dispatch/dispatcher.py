"""One message through the bot: rate limit, per-user lock, load, route, handle, save."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from bot.dispatch.locks import UserLocks
from bot.dispatch.ratelimit import COUNTER_TTL, RateLimiter, Verdict
from bot.dispatch.router import Router, split_command
from bot.dispatch.state import Conversation, StateStore
from bot.i18n import translator
from bot.kv import KV
from bot.metrics import HANDLER_LATENCY, RATE_LIMITED
from bot.replies import Reply, Silence, Text, as_reply
from bot.wechat.messages import Incoming
from campus.accounts import AccountService, Principal

log = logging.getLogger(__name__)

PER_MESSAGE = ("msg", "text", "conv", "user", "_", "args")
# Events WeChat sends about our own pushes rather than on the user's behalf.
RECEIPTS = frozenset({"templatesendjobfinish"})


class Dispatcher:
    def __init__(
        self,
        router: Router,
        kv: KV,
        states: StateStore,
        locks: UserLocks,
        limiter: RateLimiter,
        accounts: AccountService,
        services: Mapping[str, Any],
    ) -> None:
        self._router = router
        self._kv = kv
        self._states = states
        self._locks = locks
        self._limiter = limiter
        self._accounts = accounts
        self._services = dict(services)
        router.check_dependencies([*PER_MESSAGE, *self._services])

    async def handle(self, msg: Incoming, budget: float) -> Reply:
        """The reply to one message. Raises only for faults (database down, …).

        Two round trips to the store on the common path: KV.enter counts the message, takes
        the user's lock and reads the conversation and the cached principal; KV.leave saves
        the conversation and releases the lock.
        """
        started = time.perf_counter()
        if msg.kind == "event" and msg.event in ("view", "location"):
            # Navigation: nothing to answer, and no reason to count them.
            return Reply(Silence())
        if msg.kind == "event" and msg.event in RECEIPTS:
            return await self._receipt(msg)
        openid = msg.openid
        owner = secrets.token_hex(8)
        profile_key = self._accounts.profile_key(openid)
        reads = [*self._states.keys(openid), *([profile_key] if profile_key else [])]
        lock_key = self._locks.key(openid)
        async with self._locks.local(openid, timeout=budget):
            count, locked, values = await self._kv.enter(
                self._limiter.counter(openid), COUNTER_TTL, lock_key, owner, self._locks.ttl, reads
            )
            try:
                user = None
                if self._limiter.verdict(count) is not Verdict.ALLOW:
                    # Over the limit: who is asking decides (guards scan all day long).
                    user = await self._accounts.principal(
                        openid, cached=values[2] if profile_key else None
                    )
                    verdict = self._limiter.verdict(count, user.roles)
                    if verdict is not Verdict.ALLOW:
                        if locked:
                            await self._locks.release(openid, owner)
                        return self._too_fast(verdict, user)
                if not locked:  # another worker has this user: wait for it, then read again
                    await self._locks.wait_for_store_lock(openid, owner, timeout=budget)
                    values = await self._kv.get_many(reads)
                    user = None
                conv = self._states.parse(values[0], values[1])
                if user is None:
                    user = await self._accounts.principal(
                        openid, cached=values[2] if profile_key else None
                    )
                route = self._router.match(msg, conv)
                if route is None:
                    await self._locks.release(openid, owner)
                    return Reply(Silence())
                _, args = split_command(msg.content) if msg.kind == "text" else ("", "")
                deps = {
                    **self._services,
                    "msg": msg,
                    "text": msg.text,
                    "conv": conv,
                    "user": user,
                    "_": translator(user.locale),
                    "args": args,
                }
                reply = as_reply(await self._router.call(route, deps))
            except BaseException:
                await self._locks.release(openid, owner)
                raise
            writes, deletes = self._states.changes(openid, conv)
            await self._kv.leave(lock_key, owner, writes, self._states.ttl, deletes)
        HANDLER_LATENCY.labels(route.handler.__name__).observe(time.perf_counter() - started)
        return reply

    def _too_fast(self, verdict: Verdict, user: Principal) -> Reply:
        RATE_LIMITED.inc()
        if verdict is Verdict.DROP:
            return Reply(Silence())
        _ = translator(user.locale)
        return Reply(Text(_("You are sending messages too fast. Please wait a minute.")))

    async def _receipt(self, msg: Incoming) -> Reply:
        """WeChat's report on a push: routed, answered `success`, but not the user's doing.

        No rate limit, lock or conversation, and no principal: loading one would refresh
        last_seen_at and so open WeChat's 48-hour window that the user never opened. The
        handler gets the services and `msg` only.
        """
        started = time.perf_counter()
        route = self._router.match(msg, Conversation())
        if route is not None:
            await self._router.call(route, {**self._services, "msg": msg})
            HANDLER_LATENCY.labels(route.handler.__name__).observe(time.perf_counter() - started)
        return Reply(Silence())
