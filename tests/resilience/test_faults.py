"""Faults on purpose: Redis restarted mid-load, PostgreSQL gone for a while, WeChat's API down.

Redis is a private redis-server killed and started again; PostgreSQL's outage is a proxy that
cuts every connection and refuses new ones (the shared server is never touched); WeChat's API
is the emulated one, cut off by a proxy and then answering errors.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.clock import FrozenClock
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from bot.settings import Settings
from bot.wechat.api import WeChatAPI
from bot.wechat.token import AccessTokenManager
from campus.notifications import Notifications, Push
from scheduler.dispatcher import DispatchConfig, OutboxDispatcher
from storage.engine import create_engine, session_factory
from storage.models import HealthReport, HealthReportRevision, OutboxMessage
from tests.resilience.conftest import (
    SECRET,
    Campus,
    EmulatedWeChat,
    Phone,
    PrivateRedis,
    Worker,
    forget_keys,
    make_campus,
    new_appid,
    rules_file,
    student_id,
    student_no,
    tracebacks,
    worker_env,
)
from tests.resilience.proxy import FaultProxy
from tests.support import DATA_KEY, TOKEN

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SORRY = "Sorry, something went wrong on our side. Please try again in a minute."


def recorded(reply: str) -> bool:
    return "recorded" in reply.casefold()


@pytest.fixture
def campus(postgres_server_url: str) -> Iterator[Campus]:
    yield from make_campus(postgres_server_url, extra=40)


def consistent(campus: Campus) -> list[str]:
    """Reports that were half written: a replaced report whose earlier versions are missing."""

    async def go(sessions: Any) -> list[str]:
        async with sessions() as s:
            reports = (
                await s.execute(
                    select(
                        HealthReport.id,
                        HealthReport.revision,
                        func.count(HealthReportRevision.id),
                    )
                    .outerjoin(
                        HealthReportRevision, HealthReportRevision.report_id == HealthReport.id
                    )
                    .group_by(HealthReport.id)
                )
            ).all()
        return [
            f"report {report_id}: revision {revision}, {kept} earlier versions kept"
            for report_id, revision, kept in reports
            if kept != revision - 1
        ]

    return list(campus.run(go))


async def test_a_redis_restart_mid_load_loses_no_check_in(
    campus: Campus, tmp_path: Path, phone: Phone
) -> None:
    store = PrivateRedis(tmp_path)
    appid = new_appid()
    wechat = EmulatedWeChat(appid)
    env = worker_env(
        appid=appid,
        database_url=campus.url,
        redis_url=store.url,
        api_base=wechat.api_base,
        rules=rules_file(tmp_path),
        rate_limit_per_minute=1000,
    )
    workers = [Worker(f"serve{i}", env, tmp_path) for i in (1, 2)]
    users = [f"o_redis_{i}" for i in range(30)]
    for i, openid in enumerate(users):
        campus.bind(openid, student_no(i))
    talker = "o_redis_talker"
    campus.bind(talker, student_no(35))
    try:
        for w in workers:
            w.wait_ready()
        urls = [w.url for w in workers]
        # Someone is in the middle of the check-in steps when Redis goes.
        assert "temperature" in await phone.say(urls[0], talker, "checkin")
        assert "symptom" in (await phone.say(urls[1], talker, "36.4")).casefold()

        async def check_in(i: int) -> list[str]:
            await asyncio.sleep(i * 0.05)
            replies: list[str] = []
            while len(replies) < 40:  # the user sends again until it is recorded
                replies.append(await phone.say(urls[i % 2], users[i], "checkin 36.5"))
                if recorded(replies[-1]):
                    break
                await asyncio.sleep(0.1)
            return replies

        load = asyncio.gather(*(check_in(i) for i in range(len(users))))
        await asyncio.sleep(0.5)
        store.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(store.start)
        results = await load

        assert all(recorded(r[-1]) for r in results), results
        # Every answer was either the check-in or a polite "try again": never a 500.
        assert {r for replies in results for r in replies[:-1]} <= {SORRY}
        assert sum(len(r) > 1 for r in results) > 0, "the restart hit no request"
        for i in range(len(users)):
            assert (
                campus.count(HealthReport, HealthReport.person_id == campus.persons[student_no(i)])
                == 1
            )
        assert consistent(campus) == []

        # The interrupted conversation: its step lived in Redis and is gone. The answer to the
        # old question gets a clear reply offering the check-in, never an error ...
        after = await phone.say(urls[0], talker, "none")
        assert after and after != SORRY
        assert "symptom" in after.casefold() or "checkin" in after
        # ... and the check-in starts over and completes.
        steps = ["checkin", "36.4", "none", "campus", "neither"]
        replies = [await phone.say(urls[i % 2], talker, s) for i, s in enumerate(steps)]
        assert recorded(replies[-1]), replies
        assert not tracebacks(*workers) or all(
            "ConnectionError" in t or "ConnectionRefusedError" in t for t in tracebacks(*workers)
        ), tracebacks(*workers)
    finally:
        for w in workers:
            w.stop()
        store.close()
        wechat.close()


async def test_a_postgresql_outage_gets_a_polite_reply_and_the_pool_reconnects(
    campus: Campus, redis_url: str, tmp_path: Path, phone: Phone
) -> None:
    parts = urlsplit(campus.url)
    proxy = FaultProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    userinfo = parts.netloc.rpartition("@")[0]
    through_proxy = urlunsplit(
        parts._replace(netloc=(userinfo + "@" if userinfo else "") + f"127.0.0.1:{proxy.port}")
    )
    appid = new_appid()
    wechat = EmulatedWeChat(appid)
    env = worker_env(
        appid=appid,
        database_url=through_proxy,
        redis_url=redis_url,
        api_base=wechat.api_base,
        rules=rules_file(tmp_path),
        rate_limit_per_minute=1000,
    )
    worker = Worker("serve", env, tmp_path)
    users = [f"o_pg_{i}" for i in range(20)]
    for i, openid in enumerate(users):
        campus.bind(openid, student_no(i))
    newcomer = "o_pg_newcomer"
    try:
        worker.wait_ready()
        url = worker.url
        assert recorded(await phone.say(url, users[0], "checkin 36.5"))
        # A newcomer is half-way through binding when the database goes.
        assert "person number" in await phone.say(url, newcomer, "bind")
        assert "last 6" in await phone.say(url, newcomer, student_no(38))

        async def during(openid: str, text: str) -> str:
            return await phone.say(url, openid, text)

        # Under load: the outage starts while check-ins are in flight.
        load = asyncio.gather(*(during(u, "checkin 36.7") for u in users[1:]))
        await asyncio.sleep(0.05)
        proxy.down()
        first = await load
        assert set(first) <= {SORRY} | {r for r in first if recorded(r)}, first
        outage = await asyncio.gather(
            during(users[0], "status"),
            during(users[1], "checkin 36.5"),
            during(newcomer, student_id(38)[-6:]),
            during("o_pg_stranger", "hello"),
        )
        assert set(outage) == {SORRY}, outage
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
            assert resp.status == 503
        assert consistent(campus) == []  # nothing half-written by the cut transactions

        proxy.up()
        # The pool reconnects: every user checks in now, once.
        for openid in users:
            assert recorded(await phone.say(url, openid, "checkin 36.6")), openid
        for i in range(len(users)):
            assert (
                campus.count(HealthReport, HealthReport.person_id == campus.persons[student_no(i)])
                == 1
            )
        assert consistent(campus) == []
        # The binding that was under way continues where it was: the step was kept.
        assert "Student 38" in await phone.say(url, newcomer, student_id(38)[-6:])
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as resp:
            assert resp.status == 200
    finally:
        worker.stop()
        proxy.close()
        wechat.close()
        forget_keys(redis_url, appid)


PUSHES = 40


async def test_wechat_down_for_a_minute_the_outbox_catches_up_without_doubles(
    campus: Campus, tmp_path: Path
) -> None:
    """The dispatcher polls every 5 s of an injected clock through a minute-long outage: the
    first half the API is unreachable, the second half it answers `system busy`."""
    appid = new_appid()
    wechat = EmulatedWeChat(appid)
    proxy = FaultProxy("127.0.0.1", wechat.port)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=campus.url,
        wechat_token=TOKEN,
        wechat_appid=appid,
        wechat_secret=SECRET,
        wechat_api_base=f"http://127.0.0.1:{proxy.port}/sim/api",
        data_key=DATA_KEY,
    )
    # Mid-morning on campus, whenever the test runs: in quiet hours (22:30–07:00 campus time)
    # these pushes would wait for the morning, and the outage would meet no send at all.
    campus_tz = ZoneInfo("Asia/Shanghai")
    morning = datetime.combine(datetime.now(campus_tz).date(), dt_time(10), tzinfo=campus_tz)
    clock = FrozenClock(morning.timestamp())
    now = datetime.fromtimestamp(clock.time(), UTC)
    openids = [f"o_push_{i}" for i in range(PUSHES)]
    for i, openid in enumerate(openids):
        campus.bind(openid, student_no(i))
    wechat.follow(*openids)
    engine = create_engine(campus.url)
    sessions = session_factory(engine)
    try:
        async with sessions.begin() as s:
            await Notifications(sessions).enqueue_many(
                s,
                [
                    Push(campus.persons[student_no(i)], "broadcast", f"notice {i}", f"n:{i}")
                    for i in range(PUSHES)
                ],
                now=now,
            )
        kv = MemoryKV()
        async with aiohttp.ClientSession() as http:
            tokens = AccessTokenManager(http, settings, kv, Keyspace(appid), clock)
            api = WeChatAPI(http, settings, tokens)
            dispatcher = OutboxDispatcher(
                sessions, api, kv, Keyspace(appid), clock, DispatchConfig(concurrency=8)
            )
            proxy.down()
            for second in range(0, 60, 5):
                if second == 30:
                    proxy.up()
                    wechat.control(error_rate=1.0, error_code=-1)
                await dispatcher.run_until_idle()
                clock.advance(5)
            assert wechat.all_calls() > 0  # it did try during the outage
            assert all(not wechat.pushes(o) for o in openids)  # and nothing got through
            wechat.control(reset=True)
            for _ in range(120):  # the API is back: at most 10 minutes of the clock
                await dispatcher.run_until_idle()
                if await _states(sessions) == {"sent": PUSHES}:
                    break
                clock.advance(5)
        assert await _states(sessions) == {"sent": PUSHES}
        async with sessions() as s:
            attempts = list((await s.execute(select(OutboxMessage.attempts))).scalars())
        assert min(attempts) >= 2  # every push was tried during the outage and retried after
        for openid in openids:
            assert len(wechat.pushes(openid)) == 1, openid
    finally:
        await engine.dispose()
        proxy.close()
        wechat.close()


async def _states(sessions: Any) -> Counter[str]:
    async with sessions() as s:
        return Counter((await s.execute(select(OutboxMessage.state))).scalars())
