"""One message through the bot: rate limit, per-user lock, load, route, handle, save."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prometheus_client import Histogram

from bot.dispatch.locks import Turn, UserLocks
from bot.dispatch.ratelimit import COUNTER_TTL, RateLimiter, Verdict
from bot.dispatch.router import Router, split_command
from bot.dispatch.state import Conversation, StateStore
from bot.i18n import translator
from bot.kv import KV, Stamp
from bot.metrics import HANDLER_LATENCY, RATE_LIMITED
from bot.replies import Reply, Silence, Text, as_reply
from bot.wechat.dedup import Once
from bot.wechat.messages import Incoming
from campus.accounts import AccountService, Principal

log = logging.getLogger(__name__)

PER_MESSAGE = ("msg", "text", "conv", "user", "_", "args", "prefetched")
# Keys a message's handler will read from the KV store (see Dispatcher `prefetch`).
Prefetch = Callable[[Incoming], Sequence[str]]
# Events WeChat sends about our own pushes rather than on the user's behalf.
RECEIPTS = frozenset({"templatesendjobfinish"})
# Menu navigation (nothing to answer) and receipts skip the dispatcher's round trips.
UNCLAIMED = RECEIPTS | {"view", "location"}
# A message that saves no conversation is answered before its last round trip only while
# at most this many users have a message in hand here. Under load, answers that wait for
# their round trip go out together, and the next requests then come in together, sharing
# Redis writes, database batches and turns of the loop: answering early made a scan cost
# 8% more CPU at 50 connections (where 14 to 50 users were in hand). At 200 scans/s, where
# one or two are, it took 0.8 ms off the median answer and 2 ms off p99 (bench/README.md).
BEHIND_AT_MOST = 8


@functools.cache
def _latency(handler: str) -> Histogram:
    return HANDLER_LATENCY.labels(handler)


class Duplicate(Exception):
    """The message was claimed before (a retry): `value` is what the first delivery stored."""

    def __init__(self, value: bytes) -> None:
        super().__init__("duplicate delivery")
        self.value = value


def claims(msg: Incoming) -> bool:
    """Whether Dispatcher.handle takes the message's dedup claim itself (given a `once`)."""
    return not (msg.kind == "event" and msg.event in UNCLAIMED)


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
        prefetch: Sequence[Prefetch] = (),
    ) -> None:
        """`prefetch`: functions naming, for a message, KV keys its handler will read; they
        are read in the first round trip, under the user's lock, and handed to the handler
        as `prefetched` (key → value). A guard's scan reads the guard's post that way."""
        self._router = router
        self._prefetch = tuple(prefetch)
        self._kv = kv
        self._states = states
        self._locks = locks
        self._limiter = limiter
        self._accounts = accounts
        self._services = dict(services)
        router.check_dependencies([*PER_MESSAGE, *self._services])
        # A message's claim on the user's lock: unique among this dispatcher's messages by
        # the count, and among workers by the random prefix (no system call per message).
        self._owner_prefix = secrets.token_hex(8)
        self._owners = itertools.count()
        # Last round trips still in flight after their reply went (see _leave_behind).
        self._behind: set[asyncio.Task[None]] = set()

    async def handle(self, msg: Incoming, budget: float, once: Once | None = None) -> Reply:
        """The reply to one message. Raises Duplicate for a retry, otherwise only for faults.

        Two round trips to the store on the common path: KV.enter claims the message (with
        `once`), counts it, takes the user's lock and reads the conversation and the cached
        principal; KV.leave stores the rendered reply for retries, saves the conversation and
        releases the lock. A message that leaves the conversation as it was (a scan, `帮助`,
        a code) is answered without waiting for KV.leave's answer, unless the worker is busy
        (BEHIND_AT_MOST): see _leave_behind.
        """
        started = time.perf_counter()
        if msg.kind == "event" and msg.event in ("view", "location"):
            # Navigation: nothing to answer, and no reason to count them.
            return Reply(Silence())
        if msg.kind == "event" and msg.event in RECEIPTS:
            return await self._receipt(msg)
        openid = msg.openid
        owner = f"{self._owner_prefix}{next(self._owners):x}"
        profile_key = self._accounts.profile_key(openid)
        extra = [key for keys in self._prefetch for key in keys(msg)]
        reads = [*self._states.keys(openid), *([profile_key] if profile_key else []), *extra]
        lock_key = self._locks.key(openid)
        turn = self._locks.local(openid, timeout=budget)
        async with turn:
            entry = await self._kv.enter(
                self._limiter.counter(openid),
                COUNTER_TTL,
                lock_key,
                owner,
                self._locks.ttl,
                reads,
                None if once is None else once.claim,
            )
            if entry.duplicate is not None:
                raise Duplicate(entry.duplicate)
            if once is not None:
                once.claimed()
            locked, values = entry.locked, entry.values
            # A principal read from the database is cached in the last round trip, if no
            # drop (binding, registration, here or in another worker) came meanwhile.
            fresh: Stamp | None = None
            try:
                user = None
                if self._limiter.verdict(entry.count) is not Verdict.ALLOW:
                    # Over the limit: who is asking decides (guards scan all day long).
                    user, fresh = await self._accounts.lookup(
                        openid, cached=values[2] if profile_key else None
                    )
                    verdict = self._limiter.verdict(entry.count, user.roles)
                    if verdict is not Verdict.ALLOW:
                        reply = self._too_fast(verdict, user)
                        # Read without the user's lock, perhaps before another worker's
                        # change to them: only the lock's holder caches a principal.
                        cache = fresh if locked else None
                        self._leave_behind(turn, lock_key, owner, once, reply, cache)
                        return reply
                if not locked:  # another worker has this user: wait for it, then read again
                    await self._locks.wait_for_store_lock(openid, owner, timeout=budget)
                    values = await self._kv.get_many(reads)
                    user, fresh = None, None
                conv = self._states.parse(openid, values[0], values[1])
                if user is None:
                    user, fresh = await self._accounts.lookup(
                        openid, cached=values[2] if profile_key else None
                    )
                route = self._router.match(msg, conv)
                if route is None:
                    reply = Reply(Silence())
                    self._leave_behind(turn, lock_key, owner, once, reply, fresh)
                    return reply
                _, args = split_command(msg.content) if msg.kind == "text" else ("", "")
                deps = {
                    **self._services,
                    "msg": msg,
                    "text": msg.text,
                    "conv": conv,
                    "user": user,
                    "_": translator(user.locale),
                    "args": args,
                    "prefetched": dict(zip(extra, values[len(reads) - len(extra) :], strict=True)),
                }
                reply = as_reply(await self._router.call(route, deps))
            except BaseException:
                await self._locks.release(openid, owner)
                raise
            writes, deletes = self._states.changes(openid, conv)
            if writes or deletes or self._locks.in_hand() > BEHIND_AT_MOST:
                # Saves a conversation (the user is told only what is saved), or a busy
                # moment: waits for the round trip.
                stamps = [] if once is None else [once.stamp(reply)]
                if fresh is not None:
                    stamps.append(fresh)
                await self._kv.leave(lock_key, owner, writes, self._states.ttl, deletes, stamps)
            else:
                self._leave_behind(turn, lock_key, owner, once, reply, fresh)
        _latency(route.handler.__name__).observe(time.perf_counter() - started)
        return reply

    def _leave_behind(
        self,
        turn: Turn,
        lock_key: str,
        owner: str,
        once: Once | None,
        reply: Reply,
        fresh: Stamp | None,
    ) -> None:
        """The last round trip of a message that saves no conversation, sent while its reply
        goes: stamp the reply for retries, cache a principal just read from the database (its
        stamp is guarded against drops), release the lock (if still ours).

        Nothing the user is told waits on it, so the reply goes one round trip sooner.
        Whatever comes next for this user or this message still finds it done first: here,
        the user's turn passes on only when it is (a retry waits for the turn too); in
        another worker, the store's lock is taken until then, and it waits for that.
        A failed round trip is sent once more (a lost connection is opened again for it;
        sent twice, it does the same). If that fails too, the reply has gone already and
        nothing was left unsaved, but the lock and the claim stay until they expire
        (LOCK_TTL, the claim's pending ttl: 30 s): meanwhile the user's next message is told
        to try again in a moment, and a retry gets `success`. `drain` waits for the ones in
        flight at shutdown."""
        stamps = [] if once is None else [once.stamp(reply)]
        if fresh is not None:
            stamps.append(fresh)
        task = asyncio.get_running_loop().create_task(self._leave_twice(lock_key, owner, stamps))
        self._behind.add(task)
        pass_on = turn.hold()

        def left(task: asyncio.Task[None]) -> None:
            self._behind.discard(task)
            pass_on()
            if not task.cancelled() and (exc := task.exception()) is not None:
                # The error alone: the keys name the user.
                log.warning("could not end a message's turn in the store: %r", exc)

        task.add_done_callback(left)

    async def _leave_twice(self, lock_key: str, owner: str, stamps: list[Stamp]) -> None:
        try:
            await self._kv.leave(lock_key, owner, {}, self._states.ttl, [], stamps)
        except Exception:
            await self._kv.leave(lock_key, owner, {}, self._states.ttl, [], stamps)

    async def drain(self) -> None:
        """Wait for the last round trips still in flight (shutdown, before the store closes)."""
        while self._behind:
            await asyncio.wait(list(self._behind))

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
            _latency(route.handler.__name__).observe(time.perf_counter() - started)
        return Reply(Silence())
