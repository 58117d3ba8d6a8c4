"""The health jobs: the day roll-over, check-in reminders, the afternoon summary, escalations.

Each builds the health services from the job context (the rules file was read once at
start-up; its health section is checked again here, which costs microseconds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campus.health.services import HealthKit, Words, health_kit, health_rules
from handlers import keywords as kw

if TYPE_CHECKING:  # scheduler.jobs imports this module for its table
    from scheduler.jobs import JobContext


def _kit(ctx: JobContext) -> HealthKit:
    return health_kit(
        ctx.sessions,
        health_rules(ctx.rules.sections, ctx.rules.source),
        ctx.notifications,
        ctx.clock,
        ctx.settings.tz,
        Words(checkin=kw.CHECKIN, ack=kw.ACK, set_status=kw.SET_STATUS),
    )


async def health_rollover(ctx: JobContext) -> str:
    """Count yesterday's missed reports (and any day missed since the last run); apply rules."""
    days = await _kit(ctx).rollovers.run(ctx.now())
    if not days:
        return "nothing to roll over"
    return "; ".join(
        f"{d.day}: already done"
        if d.skipped
        else f"{d.day}: {d.missed} missed, {d.changed} status changes, {d.warned} warnings"
        for d in days
    )


async def health_remind_morning(ctx: JobContext) -> str:
    queued = await _kit(ctx).reminders.remind("morning", ctx.now())
    return f"{queued} reminders queued"


async def health_remind_afternoon(ctx: JobContext) -> str:
    queued = await _kit(ctx).reminders.remind("afternoon", ctx.now())
    return f"{queued} reminders queued"


async def health_summary(ctx: JobContext) -> str:
    queued = await _kit(ctx).reminders.summarize(ctx.now())
    return f"{queued} summaries queued"


async def health_escalate(ctx: JobContext) -> str:
    escalated = await _kit(ctx).warnings.escalate_due(ctx.now())
    return f"{escalated} warnings escalated"
