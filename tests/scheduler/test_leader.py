"""Leader election: one scheduler runs the cron jobs; another takes over when it dies."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.clock import FrozenClock
from bot.kv import KV, MemoryKV, RedisKV
from campus.notifications import Notifications
from campus.rules import parse_rules
from scheduler.jobs import Job, JobContext
from scheduler.leader import LeaderElector
from scheduler.runner import Scheduler, job_context
from storage.engine import create_engine, session_factory
from tests.scheduler.conftest import rig_settings

# Per run: other test runs may share this Redis at the same time.
LOCK = f"hc:wxleadertest{secrets.token_hex(4)}:scheduler:leader"


async def test_extend_if_equals_renews_only_our_own_lock(kv: KV) -> None:
    await kv.set("lock", "me", 10)
    assert not await kv.extend_if_equals("lock", "someone-else", 30)
    assert await kv.extend_if_equals("lock", "me", 0.05)
    await asyncio.sleep(0.12)  # the KV's own TTL, which only real time moves
    assert await kv.get("lock") is None
    assert not await kv.extend_if_equals("lock", "me", 30)


async def test_alone_in_memory_the_process_leads() -> None:
    elector = LeaderElector(MemoryKV(), LOCK)
    assert await elector.tick()
    assert await elector.tick()  # renewal
    await elector.stop()
    assert not elector.is_leader


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisKV]:
    store = RedisKV.from_url(redis_url)
    await store.delete(LOCK)
    yield store
    await store.delete(LOCK)
    await store.close()


@pytest.mark.redis
async def test_one_leader_and_a_takeover_after_the_leader_dies(redis: RedisKV) -> None:
    changes: list[tuple[str, bool]] = []
    a = LeaderElector(redis, LOCK, ttl=0.4, on_change=lambda v: changes.append(("a", v)))
    b = LeaderElector(redis, LOCK, ttl=0.4, on_change=lambda v: changes.append(("b", v)))
    assert await a.tick()
    assert not await b.tick()
    assert await a.tick() and not await b.tick()  # a renews; b still follows
    assert await redis.get(LOCK) == a.token.encode()
    # a dies: no release, no more renewals. b takes over once the lock has expired.
    loop = asyncio.get_running_loop()
    died = loop.time()
    while not await b.tick():
        assert loop.time() - died < 2, "no takeover"
        await asyncio.sleep(0.05)
    assert 0.3 <= loop.time() - died < 1.0
    # The old leader finds out at its next renewal, and steps down.
    assert not await a.tick()
    assert changes == [("a", True), ("b", True), ("a", False)]


@pytest.mark.redis
async def test_a_leader_that_stops_hands_over_at_once(redis: RedisKV) -> None:
    a = LeaderElector(redis, LOCK, ttl=30)
    b = LeaderElector(redis, LOCK, ttl=30)
    assert await a.tick() and not await b.tick()
    await a.stop(release=True)
    assert await b.tick()


def _rules() -> Any:
    return parse_rules({"schedule": {"count_up": {"cron": "* * * * *"}}})


async def _count_up(ctx: JobContext) -> str:
    return "counted"


@pytest.mark.redis
async def test_two_schedulers_only_the_leader_runs_jobs_and_the_other_takes_over(
    redis: RedisKV, tmp_path: Path
) -> None:
    """Two scheduler processes (here: two instances sharing one Redis) with a short lock."""
    appid = f"wxlead{secrets.token_hex(5)}"  # a lock key of this run's own
    settings = rig_settings(
        tmp_path, "http://127.0.0.1:9", scheduler_lock_seconds=0.4, wechat_appid=appid
    )
    engine = create_engine(settings.database_url)
    jobs = {"count_up": Job("count_up", _count_up, "a test job")}
    schedulers = []
    try:
        for _ in range(2):
            ctx = job_context(settings, session_factory(engine), redis, FrozenClock())
            ctx = JobContext(
                ctx.settings,
                ctx.sessions,
                ctx.kv,
                ctx.keys,
                ctx.clock,
                _rules(),
                Notifications(ctx.sessions),
            )
            schedulers.append(Scheduler(ctx, api=None, jobs=jobs, dispatch=False))  # type: ignore[arg-type]
        first, second = schedulers
        await first.start()
        await second.start()
        assert first.elector.is_leader and not second.elector.is_leader
        # A cron tick reaches both processes; only the leader runs the job.
        assert await first.fire("count_up") == "counted"
        assert await second.fire("count_up") is None
        assert first.next_runs()["count_up"].endswith("+08:00")  # campus time zone
        # The leader dies without a word (its renewals stop; the lock is left to expire).
        await first.elector.stop(release=False)
        loop = asyncio.get_running_loop()
        died = loop.time()
        while not second.elector.is_leader:
            assert loop.time() - died < 2, "no takeover"
            await asyncio.sleep(0.05)
        # ttl + one renewal interval at most: 0.5 s here, 25 s with the default 20 s lock.
        assert loop.time() - died < 0.4 + 0.1 + 0.3
        assert await second.fire("count_up") == "counted"
        assert second.runs == {"count_up": 1} and first.runs == {"count_up": 1}
    finally:
        for scheduler in schedulers:
            await scheduler.stop()
        await redis.delete(f"hc:{appid}:scheduler:leader")
        await engine.dispose()
