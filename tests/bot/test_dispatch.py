"""Dispatch: the per-user lock, dedup of retries, the 4.5 s deadline, the rate limit."""

from __future__ import annotations

import asyncio
from typing import Any

from bot import appkeys as K
from bot.clock import FrozenClock
from bot.dispatch.dispatcher import Dispatcher
from bot.dispatch.locks import UserLocks
from bot.dispatch.ratelimit import RateLimiter
from bot.dispatch.router import Router
from bot.dispatch.state import Conversation, StateStore
from bot.keyspace import Keyspace
from bot.kv import KV, Stamp
from bot.replies import Message, Text
from bot.wechat.messages import Incoming
from campus.accounts import DROPPED, Principal, drop_principal
from tests.bot.conftest import MakeBot, slow_binding
from tests.support import FakeWeChatAPI, text_xml

KEYS = Keyspace("wxdispatchtest")


class StubAccounts:
    def profile_key(self, openid: str) -> str | None:
        return None

    async def lookup(
        self, openid: str, *, cached: bytes | None = None
    ) -> tuple[Principal, Stamp | None]:
        return Principal(openid=openid, locale="en"), None


def _dispatcher(
    kv: KV,
    router: Router,
    prefetch: Any = (),
    *,
    per_minute: int = 1000,
    accounts: object | None = None,
) -> Dispatcher:
    return Dispatcher(
        router=router,
        kv=kv,
        states=StateStore(kv, KEYS, 60),
        locks=UserLocks(kv, KEYS),
        limiter=RateLimiter(KEYS, per_minute, FrozenClock()),
        accounts=accounts or StubAccounts(),  # type: ignore[arg-type]
        services={},
        prefetch=prefetch,
    )


def _text(openid: str, content: str, msg_id: int) -> Incoming:
    return Incoming(
        openid=openid, account="gh", create_time=1, kind="text", msg_id=msg_id, content=content
    )


async def test_messages_sent_together_never_skip_a_step(kv: KV) -> None:
    async def step(conv: Conversation) -> Message:
        seen = int(conv.data.get("n", 0))
        await asyncio.sleep(0.02)  # a slow step: without the lock, both would read the same n
        conv.goto("count.step", n=seen + 1)
        return Text(str(seen + 1))

    router = Router()
    router.add(step, fallback=True)
    router.add(step, state="count.*")
    dispatcher = _dispatcher(kv, router)
    replies = await asyncio.gather(
        *(dispatcher.handle(_text("o_same", "go", i), budget=5) for i in range(6))
    )
    assert sorted(r.first.content for r in replies) == [str(n) for n in range(1, 7)]  # type: ignore[union-attr]
    assert (await StateStore(kv, KEYS, 60).load("o_same")).data["n"] == 6


async def test_two_workers_share_the_lock(kv: KV) -> None:
    """Two dispatchers over one store behave like two workers behind a proxy."""
    order: list[str] = []

    async def step(msg: Incoming, conv: Conversation) -> Message:
        order.append(f"start {msg.content}")
        await asyncio.sleep(0.03)
        order.append(f"end {msg.content}")
        conv.goto("x")
        return Text("ok")

    router = Router()
    router.add(step, fallback=True)
    router.add(step, state="x")
    a, b = _dispatcher(kv, router), _dispatcher(kv, router)
    await asyncio.gather(a.handle(_text("o_w", "1", 1), 5), b.handle(_text("o_w", "2", 2), 5))
    assert order in (
        ["start 1", "end 1", "start 2", "end 2"],
        ["start 2", "end 2", "start 1", "end 1"],
    )


async def test_a_bind_flow_raced_by_two_messages(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    assert "学工号" in await wechat.say("o_race", "绑定")
    replies = await asyncio.gather(wechat.say("o_race", "S001"), wechat.say("o_race", "S002"))
    # One answer moves on to the ID step, the other is read *at* the ID step.
    assert sum("证件号后6位" in r for r in replies) == 1
    assert sum("6位数字或字母" in r for r in replies) == 1


async def test_a_retry_is_processed_once_and_gets_the_same_reply(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    first = await wechat.say("o_retry", "绑定", msg_id=42)
    again = await wechat.say("o_retry", "绑定", msg_id=42)
    assert first == again and "学工号" in first
    # Processed once: the conversation is at the person-number step, not restarted twice;
    # the next message is read as a person number.
    assert "证件号后6位" in await wechat.say("o_retry", "S001")


async def test_a_retry_during_processing_waits_for_the_first(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    services = wechat.client.app[K.SERVICES]
    binding = services["binding"]
    calls = 0
    original = binding.bind

    async def slow_bind(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.3)
        return await original(*args)

    binding.bind = slow_bind
    xml = text_xml("o_slow", "绑定 S001 " + "000000", msg_id=77)
    first, retry = await asyncio.gather(wechat.reply(xml), wechat.reply(xml))
    assert first == retry
    assert calls == 1


async def test_events_are_deduplicated_by_sender_time_and_key(make_bot: MakeBot) -> None:
    from tests.support import event_xml

    wechat = await make_bot()
    xml = event_xml("o_ev", "CLICK", "HELP", create_time=1_700_000_000)
    assert await wechat.reply(xml) == await wechat.reply(xml)
    metrics = await (await wechat.client.get("/metrics")).text()
    assert "healthbot_dedup_hits_total" in metrics


async def test_slow_handler_replies_success_then_a_customer_service_message(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await make_bot(reply_deadline=0.2)
    slow_binding(wechat, 0.5)
    from tests.support import id_tail

    status, body = await wechat.post(text_xml("o_late", f"绑定 S001 {id_tail('S001')}"))
    assert (status, body) == (200, "success")
    for _ in range(50):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    assert fake_api.sent and fake_api.sent[0]["touser"] == "o_late"
    assert "绑定成功" in fake_api.sent[0]["text"]["content"]


async def test_a_late_answer_is_success_at_the_deadline_and_outlives_the_hang_up(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await make_bot(reply_deadline=0.2)
    finished = slow_binding(wechat, 2)
    from tests.support import id_tail

    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await wechat.client.post(
        "/wechat",
        params=wechat.params(),
        data=text_xml("o_hangup", f"绑定 S001 {id_tail('S001')}").encode(),
    )
    assert (resp.status, await resp.text()) == (200, "success")
    # At the deadline, not when the handling ended; and on a connection that then closes,
    # so that WeChat's next message does not queue behind this one.
    assert loop.time() - started < 1.5 and not finished.is_set()
    assert resp.headers.get("Connection", "").lower() == "close"
    resp.close()  # WeChat hangs up: the handling goes on and the answer is pushed
    await asyncio.wait_for(finished.wait(), 5)
    for _ in range(50):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    assert [m["touser"] for m in fake_api.sent] == ["o_hangup"]
    assert "绑定成功" in fake_api.sent[0]["text"]["content"]


async def test_rate_limit_answers_politely_once(make_bot: MakeBot) -> None:
    clock = FrozenClock(1_800_000_000)
    wechat = await make_bot(clock=clock, rate_limit_per_minute=5)
    replies = [await wechat.say("o_fast", f"hi {i}") for i in range(7)]
    assert all("没有看懂" in r for r in replies[:5])
    assert "太频繁" in replies[5]
    assert replies[6] == ""
    clock.advance(60)
    assert "没有看懂" in await wechat.say("o_fast", "hi again")
    assert "没有看懂" in await wechat.say("o_other", "hi")  # per user


async def test_guards_get_a_higher_rate_limit(make_bot: MakeBot) -> None:
    from sqlalchemy import update

    from storage.models import Person
    from tests.support import id_tail

    clock = FrozenClock(1_800_000_000)
    wechat = await make_bot(clock=clock, rate_limit_per_minute=3, guard_rate_limit_per_minute=6)
    async with wechat.client.app[K.SESSIONS].begin() as s:
        await s.execute(update(Person).where(Person.person_no == "T001").values(roles="guard"))
    await wechat.say("o_guard", f"bind T001 {id_tail('T001')}")  # 1
    replies = [await wechat.say("o_guard", "help") for _ in range(6)]  # 2..7
    assert all("You can send" in r for r in replies[:5])
    assert "too fast" in replies[5]


async def test_a_retry_after_a_late_answer_gets_success_and_no_second_push(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await make_bot(reply_deadline=0.2)
    slow_binding(wechat, 0.4)
    from tests.support import id_tail

    xml = text_xml("o_late2", f"绑定 S001 {id_tail('S001')}", msg_id=501)
    assert await wechat.post(xml) == (200, "success")
    for _ in range(50):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    assert len(fake_api.sent) == 1
    # WeChat's retry of the same message, after the answer went out as a push.
    assert await wechat.post(xml) == (200, "success")
    await asyncio.sleep(0.1)
    assert len(fake_api.sent) == 1


async def test_a_retry_of_a_rate_limited_message_gets_the_same_answer(make_bot: MakeBot) -> None:
    clock = FrozenClock(1_800_000_000)
    wechat = await make_bot(clock=clock, rate_limit_per_minute=1)
    await wechat.say("o_fast2", "hi", msg_id=1)
    first = await wechat.say("o_fast2", "hi again", msg_id=2)
    assert "太频繁" in first
    # WeChat's retry: not counted again (a third message would be dropped), same answer.
    assert await wechat.say("o_fast2", "hi again", msg_id=2) == first


async def test_a_retry_on_another_worker_waits_for_the_first(
    make_bot: MakeBot, redis_url: str
) -> None:
    """Two apps over one Redis: WeChat's retry lands on the other worker mid-processing."""
    import secrets

    from bot.kv import RedisKV
    from tests.conftest import PrefixedKV

    shared = PrefixedKV(RedisKV.from_url(redis_url), f"test:{secrets.token_hex(4)}:")
    other = PrefixedKV(RedisKV.from_url(redis_url), shared.prefix)
    try:
        one = await make_bot(kv=shared)
        two = await make_bot(kv=other, seed=False)  # same SQLite file as `one`
        calls = 0
        for app in (one.client.app, two.client.app):
            binding = app[K.SERVICES]["binding"]
            original = binding.bind

            async def slow_bind(*args: Any, _original: Any = original) -> Any:
                nonlocal calls
                calls += 1
                await asyncio.sleep(0.3)
                return await _original(*args)

            binding.bind = slow_bind
        from tests.support import id_tail

        xml = text_xml("o_two", f"绑定 S001 {id_tail('S001')}", msg_id=88)
        first = asyncio.ensure_future(one.reply(xml))
        await asyncio.sleep(0.1)
        retry = await two.reply(xml)
        first_reply = await first
        assert retry["Content"] == first_reply["Content"] and "绑定成功" in retry["Content"]
        assert calls == 1
    finally:
        await shared.close()
        await other.inner.close()


def test_the_router_index_agrees_with_the_written_order() -> None:
    """Every keyword, phrase, step, menu key and event of the real router, plus noise, in and
    out of every conversation step: the indexed match is the first route that matches."""
    from handlers import build_router

    router = build_router()
    words = {w for r in router.routes for w in (*r.keywords, *r.phrases)}
    texts = [*words, *(f"{w} S001 1" for w in words), "", "  ", "hello", "36.5", "是", "1"]
    steps: list[str | None] = [None, "nowhere.step"]
    steps += [
        r.state.rstrip("*") + ("x" if r.state.endswith("*") else "")
        for r in router.routes
        if r.state
    ]
    events = [(e, "") for r in router.routes for e in r.events]
    events += [
        (kind, k)
        for r in router.routes
        for k in r.menu_keys
        for kind in ("click", "view", "scancode_waitmsg")
    ]
    events += [("click", "NOPE"), ("subscribe", "qrscene_place:LIB"), ("location", "")]
    checked = 0
    for step in steps:
        conv = Conversation(step)
        for text in texts:
            msg = _text("o_idx", text, 1)
            assert router.match(msg, conv) is router.match_linear(msg, conv), (step, text)
            checked += 1
        for event, key in events:
            msg = Incoming(
                openid="o_idx",
                account="gh",
                create_time=1,
                kind="event",
                event=event,
                event_key=key,
            )
            assert router.match(msg, conv) is router.match_linear(msg, conv), (step, event, key)
            checked += 1
    assert checked > 1000


class DroppingAccounts:
    """Every principal it reads from the database is dropped (a binding, a registration
    approved, by this worker or another) before the message ends: it must never be cached."""

    def __init__(self, kv: KV) -> None:
        self.kv = kv

    def profile_key(self, openid: str) -> str | None:
        return KEYS.profile(openid)

    async def lookup(
        self, openid: str, *, cached: bytes | None = None
    ) -> tuple[Principal, Stamp | None]:
        stamp = Stamp(KEYS.profile(openid), "stale", 60, guard=True, expect=cached)
        await asyncio.sleep(0)
        await drop_principal(self.kv, KEYS, openid)  # dropped while this one was read
        return Principal(openid=openid, locale="en"), stamp


async def test_a_principal_dropped_meanwhile_is_cached_by_no_reply(kv: KV) -> None:
    async def answer() -> Message:
        return Text("ok")

    def dispatcher(router: Router, per_minute: int) -> Dispatcher:
        return _dispatcher(kv, router, per_minute=per_minute, accounts=DroppingAccounts(kv))

    # A message no route answers. (Its last round trip goes while it is answered: drain.)
    silent = dispatcher(Router(), 1000)
    await silent.handle(_text("o_none", "?", 1), budget=5)
    await silent.drain()
    assert (await kv.get(KEYS.profile("o_none")) or b"").startswith(DROPPED)
    # A message over the rate limit (the principal decides the limit).
    answering = Router()
    answering.add(answer, fallback=True)
    limited = dispatcher(answering, 1)
    for msg_id in (2, 3, 4):
        await limited.handle(_text("o_fast", "hi", msg_id), budget=5)
    await limited.drain()
    assert (await kv.get(KEYS.profile("o_fast")) or b"").startswith(DROPPED)
    # A message answered: the drop came from another worker, whose count this process never
    # saw; the marker alone keeps the stale principal out.
    answered = dispatcher(answering, 1000)
    await answered.handle(_text("o_answered", "hi", 5), budget=5)
    await answered.drain()
    assert (await kv.get(KEYS.profile("o_answered")) or b"").startswith(DROPPED)


class CachingAccounts:
    """Reads a principal from the database unless the cache entry is one (as AccountService)."""

    def profile_key(self, openid: str) -> str | None:
        return KEYS.profile(openid)

    async def lookup(
        self, openid: str, *, cached: bytes | None = None
    ) -> tuple[Principal, Stamp | None]:
        if cached == b"cached":
            return Principal(openid=openid, locale="en"), None
        return Principal(openid=openid, locale="en"), Stamp(
            KEYS.profile(openid), "cached", 60, guard=True, expect=cached
        )


async def test_a_principal_read_after_a_drop_is_cached(kv: KV) -> None:
    """The marker only stops what was read before it: the next message, which read the
    marker, caches its principal, and so do messages that found nothing or an old entry."""

    async def answer() -> Message:
        return Text("ok")

    router = Router()
    router.add(answer, fallback=True)
    dispatcher = _dispatcher(kv, router, accounts=CachingAccounts())
    await drop_principal(kv, KEYS, "o_after")
    await dispatcher.handle(_text("o_after", "hi", 1), budget=5)
    await dispatcher.drain()  # the stamp rides the last round trip, sent with the reply
    assert await kv.get(KEYS.profile("o_after")) == b"cached"
    await dispatcher.handle(_text("o_new", "hi", 2), budget=5)
    await dispatcher.drain()
    assert await kv.get(KEYS.profile("o_new")) == b"cached"
    await kv.set(KEYS.profile("o_old"), "an entry past its granularity", 60)
    await dispatcher.handle(_text("o_old", "hi", 3), budget=5)
    await dispatcher.drain()
    assert await kv.get(KEYS.profile("o_old")) == b"cached"


class SlowReadingAccounts:
    """Reads every principal from the database; the read's answer comes back once `answered`
    is set (the database was read at `read`)."""

    def __init__(self) -> None:
        self.read, self.answered = asyncio.Event(), asyncio.Event()

    def profile_key(self, openid: str) -> str | None:
        return KEYS.profile(openid)

    async def lookup(
        self, openid: str, *, cached: bytes | None = None
    ) -> tuple[Principal, Stamp | None]:
        self.read.set()
        await self.answered.wait()
        return Principal(openid=openid, locale="en"), Stamp(KEYS.profile(openid), "stale", 60)


async def test_only_the_worker_holding_the_lock_caches_a_principal(kv: KV) -> None:
    """Worker A is binding the user when worker B gets a message of theirs over the limit: B
    read the principal without the user's lock, before A's change, and A dropped the cached
    principal since; B must not cache what it read."""
    accounts_b = SlowReadingAccounts()

    async def bind() -> Message:
        await accounts_b.read.wait()
        await drop_principal(kv, KEYS, "o_both")  # what binding does once committed
        accounts_b.answered.set()
        await asyncio.sleep(0.05)
        return Text("bound")

    router = Router()
    router.add(bind, fallback=True)

    def worker(accounts: object) -> Dispatcher:
        return _dispatcher(kv, router, per_minute=1, accounts=accounts)

    a, b = worker(StubAccounts()), worker(accounts_b)
    first = asyncio.ensure_future(a.handle(_text("o_both", "bind", 1), budget=5))
    await asyncio.sleep(0.02)  # A holds the user's lock
    await b.handle(_text("o_both", "again", 2), budget=5)  # over the limit
    await first
    await a.drain()
    await b.drain()
    assert (await kv.get(KEYS.profile("o_both")) or b"").startswith(DROPPED)


class CountingKV:
    """A KV that counts the reads it is asked for outside the dispatcher's round trips."""

    def __init__(self, inner: KV) -> None:
        self.inner = inner
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get(self, key: str) -> bytes | None:
        self.reads += 1
        return await self.inner.get(key)

    async def get_many(self, keys: list[str]) -> list[bytes | None]:
        self.reads += 1
        return await self.inner.get_many(keys)


async def test_prefetched_keys_come_with_the_conversation(kv: KV) -> None:
    """Keys a prefetch names for a message are read in the first round trip, under the
    user's lock, and handed to the handler; other messages read nothing extra."""
    seen: list[dict[str, bytes | None]] = []

    async def handler(prefetched: dict[str, bytes | None]) -> Message:
        seen.append(prefetched)
        return Text("ok")

    router = Router()
    router.add(handler, fallback=True)
    counting = CountingKV(kv)
    await kv.set("post:o_pre", "42", 60)

    def post(msg: Incoming) -> list[str]:
        return [f"post:{msg.openid}", f"exit:{msg.openid}"] if msg.content == "scan" else []

    dispatcher = _dispatcher(counting, router, [post])  # type: ignore[arg-type]
    await dispatcher.handle(_text("o_pre", "scan", 1), budget=5)
    await dispatcher.handle(_text("o_pre", "other", 2), budget=5)
    assert seen == [{"post:o_pre": b"42", "exit:o_pre": None}, {}]
    assert counting.reads == 0


async def test_a_message_that_waited_for_the_lock_gets_the_prefetched_keys_read_after(
    kv: KV,
) -> None:
    """Another worker holds the user's lock and changes a prefetched key meanwhile: the
    message that waited reads its keys again after the lock, and sees the change."""
    seen: list[bytes | None] = []

    async def first(prefetched: dict[str, bytes | None]) -> Message:
        await asyncio.sleep(0.05)  # holds the lock
        await kv.set("post:o_wait", "2", 60)
        return Text("moved")

    async def second(prefetched: dict[str, bytes | None]) -> Message:
        seen.append(prefetched["post:o_wait"])
        return Text("scanned")

    def post(msg: Incoming) -> list[str]:
        return [f"post:{msg.openid}"]

    def worker(handler: Any) -> Dispatcher:
        router = Router()
        router.add(handler, fallback=True)
        return _dispatcher(kv, router, [post])

    await kv.set("post:o_wait", "1", 60)
    a = asyncio.ensure_future(worker(first).handle(_text("o_wait", "go", 1), budget=5))
    await asyncio.sleep(0.01)  # A holds the lock
    await worker(second).handle(_text("o_wait", "scan", 2), budget=5)
    await a
    assert seen == [b"2"]
