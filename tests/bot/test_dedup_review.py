"""The dedup claim inside the message's two round trips, under the cases that break it:
retries queued behind other messages, failures after the claim, late answers, and the KV
contract of enter/leave over both stores."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from bot import appkeys as K
from bot.dispatch.dispatcher import BEHIND_AT_MOST
from bot.i18n import translator
from bot.kv import KV, MemoryKV, Stamp
from bot.wechat.dedup import PENDING, Deduplicator
from tests.bot.conftest import MakeBot, slow_binding
from tests.support import FakeWeChatAPI, WeChat, id_tail, text_xml

SORRY = "Sorry, something went wrong on our side. Please try again in a minute."


def _sorry_zh() -> str:
    return translator("zh_CN")(SORRY)


# --- the KV contract of enter/leave, over MemoryKV and RedisKV alike ---


async def test_enter_claims_counts_locks_and_reads(kv: KV) -> None:
    p = secrets.token_hex(3)
    await kv.set(f"{p}:r1", "one", 60)
    claim = Stamp(f"{p}:claim", PENDING, 30)
    entry = await kv.enter(f"{p}:n", 120, f"{p}:lock", "me", 30, [f"{p}:r1", f"{p}:r2"], claim)
    assert (entry.count, entry.locked, entry.values, entry.duplicate) == (
        1,
        True,
        [b"one", None],
        None,
    )
    assert await kv.get(f"{p}:claim") == PENDING
    # The retry: nothing else happens, it gets the claim's value.
    again = await kv.enter(f"{p}:n", 120, f"{p}:lock", "other", 30, [f"{p}:r1"], claim)
    assert (again.count, again.locked, again.values, again.duplicate) == (0, False, [], PENDING)
    assert await kv.get(f"{p}:n") == b"1"  # not counted
    assert await kv.get(f"{p}:lock") == b"me"  # not taken
    # Another message of the user while the lock is held: counted, not locked, reads read.
    other = await kv.enter(f"{p}:n", 120, f"{p}:lock", "other", 30, [f"{p}:r1"])
    assert (other.count, other.locked, other.values, other.duplicate) == (2, False, [b"one"], None)
    nothing = await kv.enter(f"{p}:n2", 120, f"{p}:lock2", "x", 30, [])
    assert (nothing.count, nothing.locked, nothing.values) == (1, True, [])


async def test_leave_stamps_writes_deletes_and_releases_only_its_own_lock(kv: KV) -> None:
    p = secrets.token_hex(3)
    await kv.set(f"{p}:lock", "me", 30)
    await kv.set(f"{p}:gone", "x", 60)
    await kv.leave(
        f"{p}:lock",
        "me",
        {f"{p}:w1": "a", f"{p}:w2": b"b"},
        60,
        [f"{p}:gone"],
        [Stamp(f"{p}:claim", "<xml>reply</xml>", 300), Stamp(f"{p}:own", "kept", 1)],
    )
    assert await kv.get_many([f"{p}:w1", f"{p}:w2", f"{p}:gone", f"{p}:lock"]) == [
        b"a",
        b"b",
        None,
        None,
    ]
    assert await kv.get(f"{p}:claim") == b"<xml>reply</xml>"
    assert await kv.get(f"{p}:own") == b"kept"  # each stamp with its own ttl
    await asyncio.sleep(1.1)
    assert await kv.get(f"{p}:own") is None and await kv.get(f"{p}:claim") is not None
    # Someone else's lock stays; a stamp alone is written.
    await kv.set(f"{p}:lock", "them", 30)
    await kv.leave(f"{p}:lock", "me", {}, 60, [], [Stamp(f"{p}:claim", "success", 300)])
    assert await kv.get(f"{p}:lock") == b"them"
    assert await kv.get(f"{p}:claim") == b"success"
    await kv.leave(f"{p}:lock", "them", {}, 60, [f"{p}:w1"])
    assert await kv.get_many([f"{p}:lock", f"{p}:w1", f"{p}:w2"]) == [None, None, b"b"]


# --- retries through the callback ---


async def test_a_retry_queued_behind_an_earlier_message_gets_the_first_reply(
    make_bot: MakeBot, kv: KV
) -> None:
    wechat = await make_bot(kv=kv)
    binding = wechat.client.app[K.SERVICES]["binding"]
    original = binding.bind
    calls = 0

    async def slow_bind(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.2)
        return await original(*args)

    binding.bind = slow_bind
    earlier = asyncio.ensure_future(wechat.say("o_q", "hello", msg_id=1))
    await asyncio.sleep(0.02)  # the earlier message holds the user's local lock
    xml = text_xml("o_q", f"绑定 S001 {id_tail('S001')}", msg_id=2)
    first, retry = await asyncio.gather(wechat.reply(xml), wechat.reply(xml))
    await earlier
    assert first == retry and first is not None and "绑定成功" in first["Content"]
    assert calls == 1


async def test_a_handler_error_after_the_claim_gives_the_retry_the_apology(
    make_bot: MakeBot, kv: KV
) -> None:
    wechat = await make_bot(kv=kv)
    binding = wechat.client.app[K.SERVICES]["binding"]

    async def broken_bind(*args: Any) -> Any:
        await asyncio.sleep(0.1)
        raise RuntimeError("boom")

    binding.bind = broken_bind
    xml = text_xml("o_err", f"绑定 S001 {id_tail('S001')}", msg_id=3)
    first, retry = await asyncio.gather(wechat.reply(xml), wechat.reply(xml))
    assert first is not None and first["Content"] == _sorry_zh()
    assert retry == first
    assert await wechat.reply(xml) == first  # and a later retry too
    assert wechat.client.app[K.CALLBACK]._dedup._local == {}


class FailingLeave(MemoryKV):
    """The last round trip fails (the store went away after the handler ran)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_for: str | None = None
        self.failures = 1  # how many times in a row

    async def leave(
        self,
        lock: str,
        owner: str,
        writes: Mapping[str, bytes | str],
        ttl: float,
        deletes: Sequence[str],
        stamps: Sequence[Stamp] = (),
    ) -> None:
        if self.fail_for is not None and self.fail_for in lock:
            self.failures -= 1
            if self.failures <= 0:
                self.fail_for = None
            raise ConnectionError("store lost")
        await super().leave(lock, owner, writes, ttl, deletes, stamps)


async def test_a_failed_last_round_trip_answers_the_apology_and_a_retry_gets_it(
    make_bot: MakeBot,
) -> None:
    kv = FailingLeave()
    wechat = await make_bot(kv=kv)
    kv.fail_for = "o_leave"
    first = await wechat.say("o_leave", "登记", msg_id=4)  # starts a conversation: saves it
    # Nothing was saved: the user is told so, not shown a reply whose state was lost.
    assert first == _sorry_zh()
    assert await wechat.say("o_leave", "登记", msg_id=4) == first
    assert wechat.client.app[K.CALLBACK]._dedup._local == {}


async def test_a_message_that_saves_nothing_is_answered_though_its_last_round_trip_fails(
    make_bot: MakeBot, caplog: Any
) -> None:
    kv = FailingLeave()
    wechat = await make_bot(kv=kv)
    dispatcher = wechat.client.app[K.CALLBACK]._dispatcher
    # Once: the reply went before the round trip failed, and it lost nothing; the round
    # trip is sent again, and then the reply is stamped and the lock free.
    kv.fail_for = "o_once"
    xml = text_xml("o_once", "帮助", msg_id=4)
    first = await wechat.reply(xml)
    assert first is not None and "你可以发送" in first["Content"]
    await dispatcher.drain()
    assert await wechat.reply(xml) == first
    assert await kv.get(dispatcher._locks.key("o_once")) is None
    assert "could not end" not in caplog.text
    # Twice: the answer stands all the same, and the failure is logged, without the user.
    kv.fail_for, kv.failures = "o_twice", 2
    assert "你可以发送" in await wechat.say("o_twice", "帮助", msg_id=5)
    await dispatcher.drain()
    assert "could not end a message's turn in the store: ConnectionError" in caplog.text
    assert "o_twice" not in caplog.text  # the error alone: its keys name the user
    # The lock stays until it expires (LOCK_TTL), as documented.
    assert await kv.get(dispatcher._locks.key("o_twice")) is not None


async def test_a_late_message_that_saves_nothing_is_pushed_once(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await make_bot(reply_deadline=0.2)
    accounts = wechat.client.app[K.SERVICES]["accounts"]
    lookup = accounts.lookup

    async def slow_lookup(openid: str, **kwargs: Any) -> Any:
        if openid == "o_slowhelp":
            await asyncio.sleep(0.4)
        return await lookup(openid, **kwargs)

    accounts.lookup = slow_lookup
    xml = text_xml("o_slowhelp", "帮助", msg_id=9)
    assert await wechat.post(xml) == (200, "success")
    for _ in range(60):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    await wechat.client.app[K.CALLBACK]._dispatcher.drain()
    await asyncio.sleep(0.05)
    assert len(fake_api.sent) == 1  # the answer went as a push…
    # …so WeChat's retry gets `success`, not the answer a second time.
    assert await wechat.post(xml) == (200, "success")
    assert len(fake_api.sent) == 1


class SlowLeave(MemoryKV):
    """The last round trip takes longer than the time left to the deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.0

    async def leave(self, *args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(self.delay)
        await super().leave(*args, **kwargs)


async def slow_leave_bot(make_bot: MakeBot) -> tuple[SlowLeave, WeChat]:
    """A bot whose last round trips take 0.4 s, twice its reply deadline; a first `帮助` has
    loaded a principal once, out of the timing."""
    kv = SlowLeave()
    wechat = await make_bot(kv=kv, reply_deadline=0.2)
    await wechat.say("o_warm", "帮助")
    kv.delay = 0.4
    return kv, wechat


async def test_a_message_that_saves_nothing_is_answered_before_its_last_round_trip(
    make_bot: MakeBot,
) -> None:
    kv, wechat = await slow_leave_bot(make_bot)  # waiting for it would answer `success`
    xml = text_xml("o_quick", "帮助", msg_id=8)
    status, body = await wechat.post(xml)
    assert status == 200 and "你可以发送" in body
    await wechat.client.app[K.CALLBACK]._dispatcher.drain()
    # Stamped and released once it is done: the retry gets the same reply, the lock is free.
    assert await wechat.post(xml) == (status, body)
    assert await kv.get(wechat.client.app[K.CALLBACK]._dispatcher._locks.key("o_quick")) is None


async def test_a_busy_worker_answers_only_after_the_last_round_trip(
    make_bot: MakeBot, monkeypatch: Any
) -> None:
    _, wechat = await slow_leave_bot(make_bot)  # waiting for it answers `success`
    locks = wechat.client.app[K.CALLBACK]._dispatcher._locks
    monkeypatch.setattr(locks, "in_hand", lambda: BEHIND_AT_MOST)
    status, body = await wechat.post(text_xml("o_calm", "帮助", msg_id=30))
    assert status == 200 and "你可以发送" in body
    monkeypatch.setattr(locks, "in_hand", lambda: BEHIND_AT_MOST + 1)
    # Under load the answers wait for their round trips, and go out together.
    assert await wechat.post(text_xml("o_busy", "帮助", msg_id=31)) == (200, "success")


async def test_the_users_next_message_finds_the_last_round_trip_done(
    make_bot: MakeBot, kv: KV
) -> None:
    # The reply no longer waits for the last round trip; the user's next message must still
    # come after it, not find the user's lock taken and poll for it.
    wechat = await make_bot(kv=kv)
    await wechat.say("o_burst", "帮助")  # the principal loaded once
    locks = wechat.client.app[K.CALLBACK]._dispatcher._locks
    polled: list[str] = []
    original = locks.wait_for_store_lock

    async def polling(openid: str, owner: str, timeout: float) -> None:
        polled.append(openid)
        await original(openid, owner, timeout)

    locks.wait_for_store_lock = polling  # type: ignore[method-assign]
    replies = await asyncio.gather(
        *(wechat.say("o_burst", "帮助", msg_id=20 + i) for i in range(6))
    )
    assert all("你可以发送" in reply for reply in replies)
    assert polled == []


async def test_a_deadline_passing_during_the_last_round_trip_still_stamps_success(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    kv, wechat = await slow_leave_bot(make_bot)
    xml = text_xml("o_slowleave", "登记", msg_id=5)  # saves a conversation: waits for it
    assert await wechat.post(xml) == (200, "success")
    for _ in range(60):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    assert len(fake_api.sent) == 1  # the answer went as a push…
    kv.delay = 0.0
    await asyncio.sleep(0.05)
    # …so WeChat's retry must not get it a second time as a passive reply.
    assert await wechat.post(xml) == (200, "success")
    assert wechat.client.app[K.CALLBACK]._dedup._local == {}


async def test_a_late_answer_leaves_no_local_waiter_behind(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await make_bot(reply_deadline=0.2)
    slow_binding(wechat, 0.4)
    xml = text_xml("o_late_leak", f"绑定 S001 {id_tail('S001')}", msg_id=6)
    assert await wechat.post(xml) == (200, "success")
    for _ in range(60):
        if fake_api.sent:
            break
        await asyncio.sleep(0.05)
    assert fake_api.sent
    await asyncio.sleep(0.05)
    assert wechat.client.app[K.CALLBACK]._dedup._local == {}


class _Reads:
    """How many times the store was read for one dedup key."""

    count = 0


async def pending_claim(make_bot: MakeBot) -> tuple[Deduplicator, _Reads]:
    """A bot's deduplicator with the key "k" claimed and still pending, and a count of the
    reads of that claim (the waiter's only: the app's own reads may overlap the test)."""
    kv = MemoryKV()
    wechat = await make_bot(kv=kv)
    dedup: Deduplicator = wechat.client.app[K.CALLBACK]._dedup
    claim = dedup.store_key("k")
    reads = _Reads()
    original = kv.get

    async def counting_get(key: str) -> bytes | None:
        reads.count += key == claim
        return await original(key)

    kv.get = counting_get  # type: ignore[method-assign]
    await kv.set(claim, PENDING, 30)
    return dedup, reads


async def test_a_waiter_woken_while_the_claim_is_still_pending_does_not_spin(
    make_bot: MakeBot,
) -> None:
    dedup, reads = await pending_claim(make_bot)
    dedup._local["k"] = asyncio.Event()
    dedup.settled("k")  # woken (by another delivery of the key) while still pending
    dedup._local["k"] = event = asyncio.Event()
    event.set()
    assert await dedup.wait("k", 0.3) is None
    assert reads.count < 30  # backing off from 10 ms to 100 ms: about eight


async def test_the_last_sliver_before_the_deadline_is_waited_out_not_spun(
    make_bot: MakeBot,
) -> None:
    # uvloop's clock counts whole milliseconds and runs a shorter sleep at once: a wait of a
    # fraction of a millisecond used to read the store in a loop until the clock ticked.
    dedup, reads = await pending_claim(make_bot)
    for _ in range(20):
        reads.count = 0
        assert await dedup.wait("k", 0.0002) is None
        assert reads.count <= 3


async def test_a_retry_on_another_worker_gets_the_apology_of_a_failed_first(
    make_bot: MakeBot, redis_url: str
) -> None:
    from bot.kv import RedisKV
    from tests.conftest import PrefixedKV

    shared = PrefixedKV(RedisKV.from_url(redis_url), f"test:{secrets.token_hex(4)}:")
    other = PrefixedKV(RedisKV.from_url(redis_url), shared.prefix)
    try:
        one = await make_bot(kv=shared)
        two = await make_bot(kv=other, seed=False)
        for app in (one.client.app, two.client.app):

            async def broken_bind(*args: Any) -> Any:
                await asyncio.sleep(0.3)
                raise RuntimeError("boom")

            app[K.SERVICES]["binding"].bind = broken_bind
        xml = text_xml("o_two_err", f"绑定 S001 {id_tail('S001')}", msg_id=7)
        first = asyncio.ensure_future(one.reply(xml))
        await asyncio.sleep(0.1)
        retry = await two.reply(xml)  # PENDING on the other worker: it polls
        assert retry is not None and retry["Content"] == _sorry_zh()
        assert await first == retry
        for app in (one.client.app, two.client.app):
            assert app[K.CALLBACK]._dedup._local == {}
    finally:
        await shared.close()
        await other.inner.close()


class BrokenAfterDelay(MemoryKV):
    """The store goes down while a message is being handled: its last round trip and the
    apology's stamp both fail, after the reply deadline has passed."""

    def __init__(self) -> None:
        super().__init__()
        self.broken_for: str | None = None
        self.down = False

    async def leave(self, lock: str, *args: Any, **kwargs: Any) -> None:
        if self.broken_for is not None and self.broken_for in lock:
            await asyncio.sleep(0.4)
            self.down = True
            raise ConnectionError("store lost")
        await super().leave(lock, *args, **kwargs)

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        if self.down:
            raise ConnectionError("store lost")
        return await super().set(key, value, ttl, nx=nx)


async def test_the_store_failing_after_the_deadline_leaves_the_success_answer_alone(
    make_bot: MakeBot, caplog: Any
) -> None:
    kv = BrokenAfterDelay()
    wechat = await make_bot(kv=kv, reply_deadline=0.2)
    await wechat.say("o_warm", "帮助")
    kv.broken_for = "o_gone"
    # The answer at the deadline stands: `success`, not a 500 or the apology.
    assert await wechat.post(text_xml("o_gone", "登记", msg_id=7)) == (200, "success")
    for _ in range(100):
        if "could not finish a late text message" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "could not finish a late text message" in caplog.text
    kv.broken_for, kv.down = None, False
    assert "你可以发送" in await wechat.say("o_other", "帮助")
