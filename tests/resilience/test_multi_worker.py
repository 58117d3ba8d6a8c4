"""Two `healthbot serve` workers on one Redis and one PostgreSQL, messages alternating between
them; two `healthbot scheduler` processes, one leader, and a failover by kill -9."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from storage.models import HealthReport, OutboxMessage, WeChatAccount
from tests.resilience.conftest import (
    CUSTOM,
    FAST_CRON,
    TOKEN_PATHS,
    Campus,
    EmulatedWeChat,
    Phone,
    Process,
    Worker,
    forget_keys,
    free_port,
    make_campus,
    new_appid,
    rules_file,
    student_id,
    student_no,
    tracebacks,
    worker_env,
)

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

RATE = 10  # messages per user and minute, low so the limit is reached quickly
LOCK_SECONDS = 2.0  # the scheduler's leader lock: a failover within 2.5 s


@dataclass
class Cluster:
    campus: Campus
    wechat: EmulatedWeChat
    workers: list[Worker]
    appid: str
    redis_url: str
    env: dict[str, str]
    logs: Path

    @property
    def urls(self) -> list[str]:
        return [w.url for w in self.workers]

    def user(self, i: int) -> str:
        """A bound student's openid, following the account."""
        openid = f"o_mw_{i}"
        self.campus.bind(openid, student_no(i))
        self.wechat.follow(openid)
        return openid


@pytest.fixture(scope="module")
def cluster(
    redis_url: str, postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("multi_worker")
    appid = new_appid()
    wechat = EmulatedWeChat(appid)
    campus_gen = make_campus(postgres_server_url, extra=40)
    campus = next(campus_gen)
    env = worker_env(
        appid=appid,
        database_url=campus.url,
        redis_url=redis_url,
        api_base=wechat.api_base,
        rules=rules_file(logs, {"health_remind_morning": "0 9 * * *"}),
        rate_limit_per_minute=RATE,
        scheduler_lock_seconds=LOCK_SECONDS,
        template_ids='{"health_reminder": "TPL_reminder"}',
    )
    workers = [Worker(f"serve{i}", env, logs) for i in (1, 2)]
    try:
        for w in workers:
            w.wait_ready()
        yield Cluster(campus, wechat, workers, appid, redis_url, env, logs)
        assert not tracebacks(*workers), "\n".join(tracebacks(*workers))
    finally:
        for w in workers:
            w.stop()
        wechat.close()
        forget_keys(redis_url, appid)
        next(campus_gen, None)


async def test_a_retry_on_the_other_worker_is_processed_once(
    cluster: Cluster, phone: Phone
) -> None:
    openid = cluster.user(0)
    one, two = cluster.urls
    msg_id = phone.new_msg_id()
    # WeChat retries when the first delivery is slow: both arrive while the first is running,
    # at different workers, and a third retry comes after.
    first, retry = await asyncio.gather(
        phone.say(one, openid, "checkin 36.6", msg_id),
        phone.say(two, openid, "checkin 36.6", msg_id),
    )
    late = await phone.say(two, openid, "checkin 36.6", msg_id)
    assert first and "36.6" in first
    assert retry == first and late == first
    reports = cluster.campus.count(
        HealthReport, HealthReport.person_id == cluster.campus.persons[student_no(0)]
    )
    assert reports == 1
    # A new message (a new MsgId) is processed again, and says so.
    again = await phone.say(two, openid, "checkin 36.6")
    assert again != first


async def test_a_conversation_continues_on_the_other_worker(cluster: Cluster, phone: Phone) -> None:
    one, two = cluster.urls
    openid = "o_mw_newcomer"
    asks_number = await phone.say(one, openid, "bind")
    asks_tail = await phone.say(two, openid, student_no(1))
    bound = await phone.say(one, openid, student_id(1)[-6:])
    assert "person number" in asks_number
    assert "last 6" in asks_tail
    assert "Student 1" in bound

    def bound_person() -> int | None:
        async def go(sessions: object) -> int | None:
            async with sessions() as s:  # type: ignore[operator]
                return await s.scalar(
                    select(WeChatAccount.person_id).where(WeChatAccount.openid == openid)
                )

        return cluster.campus.run(go)

    assert bound_person() == cluster.campus.persons[student_no(1)]
    # The check-in steps, alternating too.
    steps = ["checkin", "36.4", "none", "campus", "neither"]
    replies = [await phone.say(cluster.urls[i % 2], openid, s) for i, s in enumerate(steps)]
    assert "recorded" in replies[-1].casefold(), replies
    assert (
        cluster.campus.count(
            HealthReport, HealthReport.person_id == cluster.campus.persons[student_no(1)]
        )
        == 1
    )


async def test_the_rate_limit_counts_across_workers(cluster: Cluster, phone: Phone) -> None:
    for attempt in range(3):
        openid = cluster.user(10 + attempt)
        window = int(time.time() // 60)
        replies = [await phone.say(cluster.urls[i % 2], openid, "status") for i in range(RATE + 3)]
        if int(time.time() // 60) != window:
            continue  # a minute boundary passed mid-burst: the counter restarted; try again
        assert all(r and "too fast" not in r for r in replies[:RATE]), replies
        assert "too fast" in replies[RATE]
        assert replies[RATE + 1 :] == ["", ""]  # later ones are dropped, on either worker
        return
    pytest.fail("three bursts in a row crossed a minute boundary")


async def test_the_access_token_is_fetched_once_for_both(cluster: Cluster, phone: Phone) -> None:
    users = [cluster.user(20 + i) for i in range(4)]
    # Pass codes are uploaded images: each worker needs the token, both at the same moment.
    replies = await asyncio.gather(
        *(phone.say(cluster.urls[i % 2], openid, "code") for i, openid in enumerate(users))
    )
    assert all(r == "image" for r in replies), replies
    assert cluster.wechat.calls(TOKEN_PATHS[0]) + cluster.wechat.calls(TOKEN_PATHS[1]) == 1


def _leader(client: redis.Redis, appid: str) -> int | None:
    raw = client.get(f"hc:{appid}:scheduler:leader")
    if not raw:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return int(text.split(":")[1])


def test_one_scheduler_leads_and_another_takes_over_without_repeating(
    cluster: Cluster, tmp_path: Path
) -> None:
    users = [cluster.user(30 + i) for i in range(5)]
    env = {
        **cluster.env,
        "HEALTHBOT_RULES_FILE": str(rules_file(tmp_path, {"health_remind_morning": "* * * * *"})),
        "HEALTHBOT_TEST_CRON_SECONDS": "0.5",
    }
    port = free_port()  # the first one also serves /healthz and /metrics
    procs = [
        Process("scheduler1", [*FAST_CRON, "scheduler", "--port", str(port)], env, tmp_path),
        Process("scheduler2", [*FAST_CRON, "scheduler"], env, tmp_path),
    ]
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        for p in procs:
            p.wait_for_log("scheduler running")
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as resp:
            assert resp.status == 200 and json.loads(resp.read())["status"] == "ok"
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
            assert "healthbot_outbox_depth" in resp.read().decode()
        with pytest.raises(urllib.error.HTTPError) as not_here:  # no callback in a scheduler
            urllib.request.urlopen(f"{base}/wechat", timeout=5)
        assert not_here.value.code == 404
        pid = _leader(client, cluster.appid)
        assert pid in (procs[0].pid, procs[1].pid)
        leader, other = procs if procs[0].pid == pid else procs[::-1]
        leader.wait_for_log(r"job health_remind_morning done")
        _wait(lambda: all(cluster.wechat.pushes(u) for u in users), "the reminders to arrive")
        assert "job health_remind_morning" not in other.log()  # only the leader ran it

        mark = len(other.log())
        leader.kill()
        _wait(
            lambda: _leader(client, cluster.appid) == other.pid,
            "the other scheduler to lead",
            timeout=LOCK_SECONDS * 1.25 + 5,
        )
        other.wait_for_log(r"job health_remind_morning done in [\d.]+ s: 0 reminders", after=mark)
        for openid in users:
            assert len(cluster.wechat.pushes(openid)) == 1, openid

        def rows() -> list[tuple[int, str]]:
            async def go(sessions: object) -> list[tuple[int, str]]:
                async with sessions() as s:  # type: ignore[operator]
                    result = await s.execute(
                        select(OutboxMessage.person_id, OutboxMessage.state).where(
                            OutboxMessage.kind == "health_reminder"
                        )
                    )
                    return [tuple(r) for r in result]

            return cluster.campus.run(go)

        persons = [r[0] for r in rows()]
        assert len(persons) == len(set(persons))
        for openid in users:
            assert cluster.campus.persons[student_no(30 + users.index(openid))] in persons
        assert cluster.wechat.calls(CUSTOM) >= len(users)
        assert not tracebacks(other)
    finally:
        for p in procs:
            p.stop()
        client.close()


def _wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
