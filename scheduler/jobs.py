"""The scheduler's jobs, in one table: module-level async functions of a JobContext.

A job takes ids, never objects that would go stale: what must survive a restart lives in the
database, and what it pushes goes through the outbox with an idempotency key, so a job that
runs twice (a leader change mid-run, an operator's `healthbot jobs run`) does no harm.
When it runs is the rules file's business (`schedule:`); `healthbot jobs run NAME` runs it
once now through the same `run_job`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.settings import Settings
from campus.accounts import drop_principals_of
from campus.meals.deadlines import push_final_counts
from campus.meals.rules import parse_meal_rules
from campus.notifications import Notifications
from campus.registration import expire_and_remind
from campus.returns.applications import ReturnService
from campus.returns.approvals import Words as ReturnWords
from campus.returns.services import return_service
from campus.rules import Rules
from scheduler import health
from storage import outbox

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobContext:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    kv: KV
    keys: Keyspace
    clock: Clock
    rules: Rules
    notifications: Notifications

    def now(self) -> datetime:
        return utcnow(self.clock)


JobFunc = Callable[[JobContext], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    func: JobFunc
    description: str


class UnknownJob(LookupError):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown job {name!r}; known: {', '.join(sorted(known))}")


# -- the jobs ---------------------------------------------------------------------------------

PURGE_CHUNK = 5000


async def outbox_housekeeping(ctx: JobContext) -> str:
    """Requeue pushes of dead dispatchers, drop old finished ones, refresh the depth metric."""
    now = ctx.now()
    async with ctx.sessions.begin() as session:
        requeued, abandoned = await outbox.reclaim_expired(
            session, now=now, max_attempts=ctx.settings.outbox_max_attempts
        )
    cutoff = now - timedelta(days=ctx.settings.outbox_retention_days)
    purged = 0
    while True:  # in chunks, so no transaction holds many locks for long
        async with ctx.sessions.begin() as session:
            n = await outbox.purge(session, due_before=cutoff, limit=PURGE_CHUNK)
        purged += n
        if n < PURGE_CHUNK:
            break
    depth = await ctx.notifications.depth()
    return f"requeued {requeued}, abandoned {abandoned}, purged {purged}; " + ", ".join(
        f"{state} {n}" for state, n in depth.items()
    )


async def registration_expiry(ctx: JobContext) -> str:
    """Remind temporary persons and their hosts 3 days ahead; expire those past valid_until."""
    now = ctx.now()
    reminded, expired = await expire_and_remind(
        ctx.sessions,
        ctx.notifications,
        now.astimezone(ctx.settings.tz).date(),
        now,
        # An expired person's chat answers (their code, above all) change at once.
        on_expired=lambda ids: drop_principals_of(ctx.kv, ctx.keys, ctx.sessions, ids),
    )
    return f"{reminded} reminders queued, {expired} registrations expired"


async def meals_deadline_push(ctx: JobContext) -> str:
    """Push each meal slot's final counts to canteen staff once its ordering deadline passed."""
    rules = parse_meal_rules(ctx.rules.sections.get("meals"), ctx.rules.source)
    slots, queued = await push_final_counts(
        ctx.sessions, ctx.notifications, rules, ctx.settings.tz, ctx.now()
    )
    return f"{slots} meal slots closed, {queued} pushes queued"


def _returns(ctx: JobContext) -> ReturnService:
    from handlers import keywords as kw

    return return_service(
        ctx.sessions,
        ctx.notifications,
        ctx.rules.sections,
        ctx.rules.source,
        ctx.clock,
        ctx.settings.tz,
        ReturnWords(kw.APPROVE_RETURN.text, kw.REJECT_RETURN.text),
    )


async def returns_remind(ctx: JobContext) -> str:
    """Remind approvers of return applications unanswered too long; then escalate one unit up."""
    reminded, escalated = await _returns(ctx).remind_and_escalate(ctx.now())
    return f"{reminded} return applications reminded, {escalated} escalated"


async def returns_auto_approve(ctx: JobContext) -> str:
    """Approve the pending return applications the rules file's auto-approval rule admits."""
    approved = await _returns(ctx).auto_approve(ctx.now())
    return f"{approved} return applications auto-approved"


async def access_retention(ctx: JobContext) -> str:
    """Delete access records older than the rules file's tracing.retention_days."""
    from campus.tracing.retention import purge_access_records
    from campus.tracing.rules import tracing_rules

    days = tracing_rules(ctx.rules.sections, ctx.rules.source).retention_days
    deleted = await purge_access_records(ctx.sessions, ctx.now(), days)
    return f"{deleted} access records older than {days} days deleted"


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job(
            "outbox_housekeeping",
            outbox_housekeeping,
            "requeue pushes of dead dispatchers, purge old ones, count the outbox",
        ),
        Job(
            "health_rollover",
            health.health_rollover,
            "count yesterday's missed health reports and apply the rules (catches up)",
        ),
        Job(
            "health_remind_morning",
            health.health_remind_morning,
            "remind everyone who has not reported today (once a day)",
        ),
        Job(
            "health_remind_afternoon",
            health.health_remind_afternoon,
            "remind everyone who still has not reported today (once a day)",
        ),
        Job(
            "health_summary",
            health.health_summary,
            "tell each responsible person who has and has not reported today",
        ),
        Job(
            "health_escalate",
            health.health_escalate,
            "pass unacknowledged health warnings one unit up",
        ),
        Job(
            "registration_expiry",
            registration_expiry,
            "remind temporary persons and hosts 3 days ahead; expire those past valid_until",
        ),
        Job(
            "access_retention",
            access_retention,
            "delete access records older than the retention period (tracing.retention_days)",
        ),
        Job(
            "returns_remind",
            returns_remind,
            "remind approvers of return applications unanswered too long, then escalate",
        ),
        Job(
            "returns_auto_approve",
            returns_auto_approve,
            "approve pending return applications the auto-approval rule admits",
        ),
        Job(
            "meals_deadline_push",
            meals_deadline_push,
            "push each meal slot's final counts to canteen staff at its ordering deadline",
        ),
    )
}


async def run_job(ctx: JobContext, name: str, jobs: dict[str, Job] | None = None) -> str:
    """Run one job now and return its summary line (the scheduler and the CLI both call this)."""
    table = JOBS if jobs is None else jobs
    job = table.get(name)
    if job is None:
        raise UnknownJob(name, list(table))
    started = time.perf_counter()
    summary = await job.func(ctx)
    log.info("job %s done in %.1f s: %s", name, time.perf_counter() - started, summary)
    return summary
