"""The outbox dispatcher against the emulated WeChat API, one error class at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp.test_utils import unused_port
from prometheus_client import REGISTRY
from sqlalchemy import select

from bot import appkeys as K
from bot.keyspace import Keyspace
from bot.wechat.api import WeChatAPI
from bot.wechat.token import AccessTokenManager
from scheduler.dispatcher import OutboxDispatcher, next_quota_reset
from simulator.faults import QueuedError
from simulator.users import KfLimits
from storage import outbox
from storage.models import OutboxMessage
from tests.scheduler.conftest import CUSTOM, SHANGHAI, TEMPLATE, Rig
from tests.support import APPID


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_inside_the_window_a_customer_service_text(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=True)
    await rig.push("S001", text="请完成今日打卡。")
    sent_before = _sample("healthbot_outbox_sent_total", kind="reminder", channel="custom")
    assert await rig.dispatcher().run_until_idle() == 1
    row = await rig.row()
    assert (row.state, row.channel, row.attempts, row.last_error) == ("sent", "custom", 1, None)
    assert row.sent_at == rig.now()
    [message] = rig.delivered(openid)
    assert (message.via, message.text) == ("custom", "请完成今日打卡。")
    assert _sample("healthbot_outbox_sent_total", kind="reminder", channel="custom") == (
        sent_before + 1
    )


async def test_outside_the_window_the_kinds_template(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=False)
    await rig.push("S001", kind="broadcast", text="Meeting at 3")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.channel) == ("sent", "template")
    [message] = rig.delivered(openid)
    assert message.key == "TPL_broadcast"
    assert dict(message.fields) == {"content": "Meeting at 3"}
    assert row.template_msgid == message.msg_id
    assert rig.sim.calls[CUSTOM] == 0  # no doomed customer-service attempt first


async def test_a_kind_without_template_fails_outside_the_window(rig: Rig) -> None:
    await rig.bind("S001", in_window=False)
    await rig.push("S001", kind="summary")
    failed = _sample("healthbot_outbox_failed_total", kind="summary", code="no_template")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.last_error) == ("failed", "no_template")
    assert _sample("healthbot_outbox_failed_total", kind="summary", code="no_template") == (
        failed + 1
    )


async def test_unbound_person_is_recorded_failed(rig: Rig) -> None:
    await rig.push("S002")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.last_error, row.channel) == ("failed", "unbound", None)
    assert sum(rig.sim.calls.values()) == 0


@pytest.mark.parametrize("errcode", [45015, 45047])
async def test_window_errors_fall_back_to_the_template(rig: Rig, errcode: int) -> None:
    openid = await rig.bind("S001", in_window=True)
    rig.sim.inject(errors=[QueuedError(errcode, CUSTOM)])
    await rig.push("S001", kind="reminder")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.channel, row.attempts) == ("sent", "template", 1)
    assert [m.via for m in rig.delivered(openid)] == ["template"]


async def test_the_real_window_closing_falls_back_too(rig: Rig) -> None:
    """Our last_seen_at says inside, WeChat says the 48 hours are over: 45015 → template."""
    openid = await rig.bind("S001", in_window=True)
    rig.advance(47 * 3600)  # 48 h since the user's message for WeChat; 47 h for us
    await rig.push("S001")
    await rig.dispatcher().run_until_idle()
    assert (await rig.row()).channel == "template"
    assert [m.via for m in rig.delivered(openid)] == ["template"]


async def test_the_customer_service_quota_falls_back(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=True)
    rig.sim.users.kf_limits = KfLimits(message_quota=2)
    for i in range(3):
        await rig.push("S001", key=f"r{i}")
    await rig.dispatcher(concurrency=1).run_until_idle()
    assert [r.channel for r in await rig.rows()] == ["custom", "custom", "template"]
    assert len(rig.delivered(openid)) == 3


@pytest.mark.parametrize("errcode", [-1, 45011])
async def test_transient_errors_retry_with_backoff(rig: Rig, errcode: int) -> None:
    openid = await rig.bind("S001", in_window=True)
    rig.sim.inject(errors=[QueuedError(errcode, CUSTOM)])
    await rig.push("S001")
    dispatcher = rig.dispatcher(backoff_base=10)
    await dispatcher.run_until_idle()
    row = await rig.row()
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, str(errcode))
    # Backoff with jitter: 10 s × [0.5, 1.5).
    assert rig.now() + timedelta(seconds=5) <= row.not_before < rig.now() + timedelta(seconds=15)
    if errcode == 45011:
        assert 0 < await dispatcher.pause_remaining() <= 5  # every dispatcher slows down
    assert await dispatcher.run_until_idle() == 0  # not due yet
    rig.advance(15)
    assert await dispatcher.run_until_idle() == 1
    row = await rig.row()
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, None)
    assert len(rig.delivered(openid)) == 1


async def test_backoff_doubles_and_gives_up_after_max_attempts(rig: Rig) -> None:
    await rig.bind("S001", in_window=True)
    rig.sim.inject(errors=[QueuedError(-1, CUSTOM)] * 3)
    await rig.push("S001")
    dispatcher = rig.dispatcher(backoff_base=10, max_attempts=3)
    delays = []
    for _ in range(3):
        await dispatcher.run_until_idle()
        row = await rig.row()
        if row.state != "pending":
            break
        delays.append((row.not_before - rig.now()).total_seconds())
        rig.advance(3600)
    assert 5 <= delays[0] < 15 and 10 <= delays[1] < 30  # 10 s, then 20 s, jittered
    row = await rig.row()
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "-1")


async def test_network_errors_retry_with_backoff(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=True)
    await rig.push("S001")
    settings = rig.app[K.SETTINGS].model_copy(
        update={"wechat_api_base": f"http://127.0.0.1:{unused_port()}"}  # nobody listens
    )
    async with aiohttp.ClientSession() as http:
        tokens = AccessTokenManager(http, settings, rig.app[K.KV_STORE], Keyspace(APPID))
        unreachable = WeChatAPI(http, settings, tokens)
        dispatcher = OutboxDispatcher(
            rig.sessions,
            unreachable,
            rig.app[K.KV_STORE],
            Keyspace(APPID),
            rig.clock,
            rig.dispatcher().config,
        )
        await dispatcher.run_until_idle()
    row = await rig.row()
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "network")
    rig.advance(60)
    await rig.dispatcher().run_until_idle()
    assert (await rig.row()).state == "sent"
    assert len(rig.delivered(openid)) == 1


async def test_a_template_resent_after_a_crash_is_delivered_once(rig: Rig) -> None:
    """WeChat accepted a template, the dispatcher died before writing `sent`: the re-send
    carries the same client_msg_id, and WeChat delivers nothing new."""
    openid = await rig.bind("S001", in_window=False)
    await rig.push("S001", kind="broadcast")
    crashed = rig.dispatcher(claim_seconds=60)
    async with rig.sessions.begin() as s:
        [claimed] = await outbox.claim(
            s, now=rig.now(), until=rig.now() + timedelta(seconds=60), limit=1
        )
    channel, first_msgid = await crashed._send(claimed)  # on the wire, then the crash
    assert channel == "template" and len(rig.delivered(openid)) == 1
    rig.advance(61)
    assert await rig.dispatcher().run_until_idle() == 1
    row = await rig.row()
    assert (row.state, row.attempts, row.template_msgid) == ("sent", 2, first_msgid)
    assert rig.sim.calls[TEMPLATE] == 2
    assert len(rig.delivered(openid)) == 1


async def _wait_for(condition: object, timeout: float = 3.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


async def test_token_rejected_once_is_refreshed_and_sent(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=True)
    rig.sim.inject(errors=[QueuedError(40001, CUSTOM)])
    await rig.push("S001")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.attempts) == ("sent", 1)
    assert rig.sim.calls[CUSTOM] == 2
    assert len(rig.delivered(openid)) == 1


@pytest.mark.parametrize("errcode", [40001, 42001])
async def test_token_rejected_twice_is_retried_later(rig: Rig, errcode: int) -> None:
    await rig.bind("S001", in_window=True)
    rig.sim.inject(errors=[QueuedError(errcode, CUSTOM)] * 2)
    await rig.push("S001")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.last_error) == ("pending", str(errcode))
    rig.advance(3600)
    await rig.dispatcher().run_until_idle()
    assert (await rig.row()).state == "sent"


async def test_not_following_and_bad_openid_fail_permanently(rig: Rig) -> None:
    await rig.bind("S001", in_window=True, following=False)
    await rig.bind("S002", in_window=True, known=False)
    await rig.push("S001")
    await rig.push("S002")
    await rig.dispatcher().run_until_idle()
    rows = await rig.rows()
    assert [(r.state, r.last_error, r.attempts) for r in rows] == [
        ("failed", "43004", 1),
        ("failed", "40003", 1),
    ]


@pytest.mark.parametrize("errcode", [40037, 47001])
async def test_bad_template_or_data_fails_permanently(rig: Rig, errcode: int) -> None:
    await rig.bind("S001", in_window=False)
    rig.sim.inject(errors=[QueuedError(errcode, TEMPLATE)])
    await rig.push("S001", kind="broadcast")
    await rig.dispatcher().run_until_idle()
    row = await rig.row()
    assert (row.state, row.last_error, row.channel) == ("failed", str(errcode), None)


async def test_daily_quota_pauses_every_dispatcher_until_beijing_midnight(rig: Rig) -> None:
    await rig.bind("S001", in_window=True)
    await rig.bind("S002", in_window=True)
    rig.sim.quotas.set_limit(CUSTOM, 0)
    await rig.push("S001", urgent=True, key="a")
    await rig.push("S002", key="b")
    first = rig.dispatcher(concurrency=1)
    await first.run_until_idle()
    reset = next_quota_reset(rig.now())
    assert reset == datetime(2026, 11, 27, 0, 0, tzinfo=SHANGHAI)
    rows = await rig.rows()
    urgent, normal = rows
    # The push that met 45009 waits for the reset (urgent) or for the morning (quiet hours);
    # the attempt is not counted.
    assert (urgent.state, urgent.attempts, urgent.last_error) == ("pending", 0, "45009")
    assert urgent.not_before == reset
    # Another dispatcher (another process: the pause lives in the shared KV) sends nothing.
    other = rig.dispatcher()
    assert await other.pause_remaining() == pytest.approx((reset - rig.now()).total_seconds())
    assert await other.run_until_idle() == 0
    assert normal.state == "pending" and normal.attempts == 0
    rig.sim.quotas.set_limit(CUSTOM, None)
    rig.advance((reset - rig.now()).total_seconds() + 1)
    # 00:00:01: the urgent one goes; the other, due since noon, waits for quiet hours to end.
    assert await other.run_until_idle() == 1
    assert [r.state for r in await rig.rows()] == ["sent", "pending"]
    rig.advance(7 * 3600)
    assert await other.run_until_idle() == 1
    assert [r.state for r in await rig.rows()] == ["sent", "sent"]


async def test_a_crashed_claim_is_sent_once_after_it_expires(rig: Rig) -> None:
    openid = await rig.bind("S001", in_window=True)
    await rig.push("S001")
    dispatcher = rig.dispatcher(claim_seconds=60)
    # A dispatcher claims the row and dies before sending.
    async with rig.sessions.begin() as s:
        [claimed] = await outbox.claim(
            s, now=rig.now(), until=rig.now() + timedelta(seconds=60), limit=10
        )
    assert await dispatcher.run_until_idle() == 0  # still claimed
    rig.advance(61)
    assert await dispatcher.run_until_idle() == 1
    row = await rig.row()
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(rig.delivered(openid)) == 1
    # The dead dispatcher's claim is fenced: its late outcome changes nothing.
    async with rig.sessions.begin() as s:
        assert not await outbox.mark_failed(s, claimed.id, claimed.attempts, error="late")
    assert (await rig.row()).state == "sent"


async def test_expired_claims_out_of_attempts_are_abandoned(rig: Rig) -> None:
    await rig.bind("S001")
    await rig.push("S001")
    for _ in range(2):
        async with rig.sessions.begin() as s:
            await outbox.claim(s, now=rig.now(), until=rig.now() + timedelta(seconds=1), limit=1)
        rig.advance(2)
        await rig.dispatcher(max_attempts=2).reclaim_expired()
    row = await rig.row()
    assert (row.state, row.last_error) == ("failed", "abandoned")


async def test_urgent_pushes_are_claimed_first(rig: Rig) -> None:
    await rig.bind("S001")
    for i in range(5):
        await rig.push("S001", key=f"n{i}")
    rig.advance(1)
    await rig.push("S001", key="u", urgent=True)
    async with rig.sessions.begin() as s:
        claimed = await outbox.claim(s, now=rig.now(), until=rig.now(), limit=2)
    assert [c.urgent for c in claimed] == [True, False]


async def test_stopping_returns_claimed_rows_untried(rig: Rig) -> None:
    await rig.bind("S001", in_window=True)
    rig.sim.inject(latency_ms=100)
    for i in range(6):
        await rig.push("S001", key=f"k{i}")
    dispatcher = rig.dispatcher(concurrency=2, poll_interval=0.05)
    dispatcher.start()
    await _wait_for(lambda: rig.sim.calls[CUSTOM] >= 1)
    await dispatcher.stop()
    rows = await rig.rows()
    states = [r.state for r in rows]
    assert "sending" not in states  # in-flight finished, queued given back
    assert all(r.attempts == (1 if r.state == "sent" else 0) for r in rows)
    assert states.count("sent") == len([m for m in rig.delivered("o_S001")])
    rig.sim.inject(latency_ms=0)
    await rig.dispatcher().run_until_idle()
    assert [r.state for r in await rig.rows()] == ["sent"] * 6
    assert len(rig.delivered("o_S001")) == 6


async def test_the_running_dispatcher_drains_and_counts_depth(rig: Rig) -> None:
    for no in ("S001", "S002", "T001"):
        await rig.bind(no, in_window=True)
        await rig.push(no)
    dispatcher = rig.dispatcher(poll_interval=0.02)
    dispatcher.start()
    try:
        await _wait_for(lambda: rig.sim.calls[CUSTOM] == 3)
        assert _sample("healthbot_outbox_depth", state="pending") == 3  # counted at the start
        rig.advance(dispatcher.config.depth_interval)  # the backlog is counted every 15 s
        await _wait_for(lambda: _sample("healthbot_outbox_depth", state="pending") == 0)
    finally:
        await dispatcher.stop()
    async with rig.sessions() as s:
        states = (await s.execute(select(OutboxMessage.state))).scalars().all()
    assert states == ["sent"] * 3
    assert (await rig.notifications.depth())["sent"] == 3  # all states: housekeeping's count
    assert _sample("healthbot_outbox_depth", state="sent") == 3


async def test_template_reports_update_the_row(rig: Rig) -> None:
    """The emulated WeChat reports each template send to the bot's callback."""
    ok = await rig.bind("S001", in_window=False)
    blocked = await rig.bind("S002", in_window=False)
    await rig.push("S001", kind="broadcast")
    await rig.push("S002", kind="broadcast")
    rig.sim.template_report_delay = 0.2
    await rig.dispatcher().run_until_idle()
    rig.sim.users.unfollow(rig.sim.users.require(blocked))  # unfollows before the report
    await rig.sim.settle()
    first, second = await rig.rows()
    assert (first.state, first.receipt) == ("sent", "success")
    assert (second.state, second.receipt, second.last_error) == (
        "failed",
        "failed:user block",
        "user_block",
    )
    assert ok != blocked


async def test_a_report_is_not_the_users_interaction(rig: Rig) -> None:
    """A TEMPLATESENDJOBFINISH must not refresh last_seen_at (it would fake the 48-h window)."""
    from storage.models import WeChatAccount

    await rig.bind("S001", in_window=False)
    await rig.push("S001", kind="broadcast")
    await rig.dispatcher().run_until_idle()
    await rig.sim.settle()
    async with rig.sessions() as s:
        account = (await s.execute(select(WeChatAccount))).scalar_one()
    assert account.last_seen_at is not None
    assert rig.now() - account.last_seen_at >= timedelta(days=3)
    assert (await rig.row()).receipt == "success"


def test_quota_reset_is_beijing_midnight() -> None:
    at = datetime(2026, 11, 26, 15, 59, tzinfo=UTC)  # 23:59 in Beijing
    assert next_quota_reset(at) == datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
    assert next_quota_reset(at + timedelta(minutes=1)) == datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
