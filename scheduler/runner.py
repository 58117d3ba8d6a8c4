"""The scheduler of one process: cron jobs (on the leader only) and the outbox dispatcher.

It runs inside `healthbot serve` (unless --no-scheduler) or alone in `healthbot scheduler`.
Cron jobs come from the rules file's `schedule:` in the campus time zone (APScheduler 3); every
process keeps their timers, and only the leader of the moment runs them. The outbox dispatcher
runs in every process on PostgreSQL (claims with SKIP LOCKED share the work), and only on the
leader on SQLite.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock
from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV, RedisKV
from bot.settings import Settings
from campus.notifications import Notifications, Schedule
from campus.rules import RulesError, load_rules
from scheduler.dispatcher import DispatchConfig, OutboxDispatcher, PushAPI
from scheduler.jobs import JOBS, Job, JobContext, UnknownJob, run_job
from scheduler.leader import LeaderElector
from storage.engine import create_engine, session_factory

log = logging.getLogger(__name__)


def check_schedule(ctx: JobContext, jobs: dict[str, Job]) -> None:
    """Every schedule entry names a known job; raises RulesError naming the entry."""
    for entry in ctx.rules.schedule:
        if entry.job not in jobs:
            raise RulesError(
                f"{ctx.rules.source}: schedule.{entry.job}: no such job "
                f"(known: {', '.join(sorted(jobs))})"
            )


class Scheduler:
    def __init__(
        self,
        ctx: JobContext,
        api: PushAPI,
        *,
        jobs: dict[str, Job] | None = None,
        elector: LeaderElector | None = None,
        dispatch: bool = True,
        dispatch_config: DispatchConfig | None = None,
    ) -> None:
        self.ctx = ctx
        self.jobs = JOBS if jobs is None else jobs
        check_schedule(ctx, self.jobs)
        settings = ctx.settings
        self.elector = elector or LeaderElector(
            ctx.kv, ctx.keys.scheduler_leader(), ttl=settings.scheduler_lock_seconds
        )
        self.dispatcher: OutboxDispatcher | None = None
        if dispatch:
            elector_ = self.elector
            self.dispatcher = OutboxDispatcher(
                ctx.sessions,
                api,
                ctx.kv,
                ctx.keys,
                ctx.clock,
                dispatch_config or DispatchConfig.from_settings(settings),
                ctx.notifications.schedule,
                # SQLite has one writer: one dispatcher, the leader's.
                may_dispatch=(lambda: elector_.is_leader) if settings.is_sqlite else lambda: True,
                notifications=ctx.notifications,
            )
        self._cron: AsyncIOScheduler | None = None
        self.runs: dict[str, int] = {}  # job name → runs in this process (tests, diagnostics)

    async def start(self) -> None:
        await self.elector.tick()  # decide at once rather than one interval later
        self.elector.start()
        tz = self.ctx.settings.tz
        cron = AsyncIOScheduler(
            timezone=tz,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
        )
        for entry in self.ctx.rules.schedule:
            if entry.enabled:
                cron.add_job(
                    self.fire,
                    CronTrigger.from_crontab(entry.cron, timezone=tz),
                    args=[entry.job],
                    id=entry.job,
                    name=entry.job,
                )
        cron.start()
        self._cron = cron
        if self.dispatcher is not None:
            self.dispatcher.start()
        log.info(
            "scheduler started: %d cron jobs, dispatcher %s",
            len(cron.get_jobs()),
            "on" if self.dispatcher is not None else "off",
        )

    async def stop(self) -> None:
        if self._cron is not None:
            self._cron.shutdown(wait=False)
            self._cron = None
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        await self.elector.stop(release=True)

    async def fire(self, name: str) -> str | None:
        """A cron tick: run the job if this process leads now, else do nothing."""
        if not self.elector.is_leader:
            return None
        try:
            summary = await run_job(self.ctx, name, self.jobs)
        except Exception:
            log.exception("job %s failed", name)
            return None
        self.runs[name] = self.runs.get(name, 0) + 1
        return summary

    def next_runs(self) -> dict[str, str]:
        if self._cron is None:
            return {}
        return {
            job.id: job.next_run_time.isoformat() if job.next_run_time else "paused"
            for job in self._cron.get_jobs()
        }


def job_context(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    kv: KV,
    clock: Clock,
    notifications: Notifications | None = None,
) -> JobContext:
    """The context jobs get; raises RulesError for a bad rules file."""
    rules = load_rules(settings.rules_file)
    if notifications is None:
        notifications = Notifications(sessions, Schedule(rules.quiet_hours, settings.tz))
    return JobContext(
        settings=settings,
        sessions=sessions,
        kv=kv,
        keys=Keyspace(settings.wechat_appid),
        clock=clock,
        rules=rules,
        notifications=notifications,
    )


async def run_once(settings: Settings, name: str) -> str:
    """`healthbot jobs run NAME`: the job once, now, against the configured database."""
    if name not in JOBS:
        raise UnknownJob(name, list(JOBS))
    engine = create_engine(settings.database_url)
    kv: KV = RedisKV.from_url(settings.redis_url) if settings.redis_url else MemoryKV()
    try:
        ctx = job_context(settings, session_factory(engine), kv, SystemClock())
        return await run_job(ctx, name)
    finally:
        await kv.close()
        await engine.dispose()
