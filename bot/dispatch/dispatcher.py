"""One message through the bot: rate limit, per-user lock, load, route, handle, save."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from bot.dispatch.locks import UserLocks
from bot.dispatch.ratelimit import RateLimiter, Verdict
from bot.dispatch.router import Router, split_command
from bot.dispatch.state import StateStore
from bot.i18n import translator
from bot.metrics import HANDLER_LATENCY, RATE_LIMITED
from bot.replies import Reply, Silence, Text, as_reply
from bot.wechat.messages import Incoming
from campus.accounts import AccountService

log = logging.getLogger(__name__)

PER_MESSAGE = ("msg", "text", "conv", "user", "_", "args")


class Dispatcher:
    def __init__(
        self,
        router: Router,
        states: StateStore,
        locks: UserLocks,
        limiter: RateLimiter,
        accounts: AccountService,
        services: Mapping[str, Any],
    ) -> None:
        self._router = router
        self._states = states
        self._locks = locks
        self._limiter = limiter
        self._accounts = accounts
        self._services = dict(services)
        router.check_dependencies([*PER_MESSAGE, *self._services])

    async def handle(self, msg: Incoming, budget: float) -> Reply:
        """The reply to one message. Raises only for faults (database down, …)."""
        started = time.perf_counter()
        if msg.kind == "event" and msg.event in ("templatesendjobfinish", "view", "location"):
            # Receipts and navigation: nothing to answer, and no reason to count them.
            return Reply(Silence())
        verdict = await self._limiter.check(msg.openid)
        if verdict is not Verdict.ALLOW:
            RATE_LIMITED.inc()
            if verdict is Verdict.DROP:
                return Reply(Silence())
            user = await self._accounts.principal(msg.openid)
            _ = translator(user.locale)
            return Reply(Text(_("You are sending messages too fast. Please wait a minute.")))
        async with self._locks.hold(msg.openid, timeout=budget):
            conv = await self._states.load(msg.openid)
            user = await self._accounts.principal(msg.openid)
            route = self._router.match(msg, conv)
            if route is None:
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
            if conv.changed:
                await self._states.save(msg.openid, conv)
        HANDLER_LATENCY.labels(route.handler.__name__).observe(time.perf_counter() - started)
        return reply
