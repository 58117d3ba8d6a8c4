"""A person's status explained, overridden by a health officer, or recomputed from stored inputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.i18n import translator
from campus import audit
from campus.health import explain, store
from campus.health.days import campus_day, day_start, days_back
from campus.health.days import now as clock_now
from campus.health.engine import Event, Forecast, Missed, Override, Reported, forecast, replay
from campus.health.model import Reason, Report, Standing, Status, reasons_from_text, reasons_to_text
from campus.health.rules import HealthRules
from campus.health.warnings import Raise, Subject, WarningService
from campus.notifications import Notifications
from storage.models import (
    HealthReport,
    HealthReportRevision,
    HealthRollover,
    Person,
    StatusChange,
)

OFFICER_ROLE = "health_officer"


@dataclass(frozen=True, slots=True)
class StatusView:
    person_no: str
    name: str
    standing: Standing
    forecast: Forecast
    today: Report | None
    missed_days: int


class OverrideOutcome(Enum):
    DONE = "done"
    UNKNOWN_PERSON = "unknown_person"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True, slots=True)
class OverrideResult:
    outcome: OverrideOutcome
    person_no: str = ""
    name: str = ""
    before: Status = Status.GREEN
    after: Status = Status.GREEN


@dataclass(frozen=True, slots=True)
class Recomputed:
    person_no: str
    stored: Standing
    computed: Standing

    @property
    def agrees(self) -> bool:
        return self.stored.status is self.computed.status and {
            r.rule for r in self.stored.reasons
        } == {r.rule for r in self.computed.reasons}


class StatusService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: HealthRules,
        warnings: WarningService,
        notifications: Notifications,
        clock: Clock,
        tz: ZoneInfo,
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self._warnings = warnings
        self._notifications = notifications
        self._clock = clock
        self.tz = tz

    async def view(self, person_id: int) -> StatusView | None:
        day = campus_day(clock_now(self._clock), self.tz)
        async with self._sessions() as session:
            person = await store.load_person(session, person_id)
            if person is None:
                return None
            first = days_back(day, self.rules.lookback_days)
            window = await store.reports_between(session, person_id, first, day)
        history = [
            r.report
            for r in window
            if person.floor_at is None
            or (r.report.submitted_at is not None and r.report.submitted_at > person.floor_at)
        ]
        today = next((r.report for r in window if r.report.day == day), None)
        reported = today is not None and today in history
        return StatusView(
            person_no=person.person_no,
            name=person.name,
            standing=person.standing,
            forecast=forecast(self.rules, person.standing, history, day, reported),
            today=today,
            missed_days=person.missed_days,
        )

    async def override(
        self,
        person_no: str,
        status: Status,
        note: str,
        *,
        actor: str,
        officer_id: int | None = None,
    ) -> OverrideResult:
        """Set a status by hand (chat: a health officer; `officer_id` None: the CLI operator).

        An override is also the health officer's clearance that a red status needs. It
        starts afresh: reports and missed days before it are no longer read.
        """
        note = " ".join(note.split())[:200]
        now = clock_now(self._clock)
        day = campus_day(now, self.tz)
        async with store.write_lock(self._sessions), self._sessions.begin() as session:
            if officer_id is not None and not await _is_officer(session, officer_id):
                return OverrideResult(OverrideOutcome.NOT_ALLOWED)
            person = await store.find_person(session, person_no)
            if person is None:
                return OverrideResult(OverrideOutcome.UNKNOWN_PERSON)
            after = await record_override(
                session, person, status, note, actor=actor, now=now, day=day, rules=self.rules
            )
            _ = translator(person.locale)
            await self._notifications.enqueue(
                session,
                person_id=person.person_id,
                kind="status_override",
                text=_(
                    "A health officer set your health status to {colour}: {note}",
                    colour=explain.colour(status, _),
                    note=note,
                ),
                key=f"health:override:{person.person_id}:{int(now.timestamp() * 1000)}",
                urgent=status is Status.RED,
                now=now,
                locale=person.locale,
            )
            if status is not Status.GREEN:
                await self._warnings.raise_many(
                    session,
                    [Raise(Subject.of(person), after.reasons, after)],
                    now=now,
                    notify_subject=False,
                )
        return OverrideResult(
            OverrideOutcome.DONE, person.person_no, person.name, person.status, status
        )

    async def recompute(self, person_no: str) -> Recomputed | None:
        """The status the stored inputs give today, beside the stored one."""
        async with self._sessions() as session:
            person = await store.find_person(session, person_no)
            if person is None:
                return None
            events = await stored_events(session, person.person_id, self.tz)
        return Recomputed(person.person_no, person.standing, replay(self.rules, events))

    async def history(self, person_no: str, limit: int, *, actor: str) -> list[StatusChange]:
        """The latest status changes, for an operator; the read is audited."""
        async with self._sessions.begin() as session:
            person = await store.find_person(session, person_no)
            if person is None:
                return []
            audit.record(session, actor, "status_read", person.person_id)
            return list(await store.status_history(session, person.person_id, limit))


async def stored_events(session: AsyncSession, person_id: int, tz: ZoneInfo) -> list[Event]:
    """Everything the engine read about a person: every report (replaced ones too), overrides,
    missed days."""
    created = await session.scalar(select(Person.created_at).where(Person.id == person_id))
    reports = (
        await session.execute(select(HealthReport).where(HealthReport.person_id == person_id))
    ).scalars()
    events: list[Event] = [Reported(store.report_from_row(r), r.revision) for r in reports]
    reported_days = {e.report.day for e in events if isinstance(e, Reported)}
    revisions = (
        await session.execute(
            select(HealthReportRevision).where(HealthReportRevision.person_id == person_id)
        )
    ).scalars()
    events += [Reported(store.report_from_row(r), r.revision) for r in revisions]
    overrides = (
        await session.execute(
            select(StatusChange).where(
                StatusChange.person_id == person_id, StatusChange.cause == "override"
            )
        )
    ).scalars()
    for change in overrides:
        standing = Standing(Status(change.to_status), change.at, reasons_from_text(change.reasons))
        events.append(Override(change.at, standing))
    for day, done_at in await session.execute(select(HealthRollover.day, HealthRollover.done_at)):
        counted = created is None or created < day_start(day, tz)
        if counted and day not in reported_days:
            events.append(Missed(day, done_at))
    return events


async def _is_officer(session: AsyncSession, person_id: int) -> bool:
    roles = await session.scalar(
        select(Person.roles).where(Person.id == person_id, Person.state == "active")
    )
    return roles is not None and OFFICER_ROLE in roles.split(";")


async def record_override(
    session: AsyncSession,
    person: store.PersonHealth,
    status: Status,
    note: str,
    *,
    actor: str,
    now: datetime,
    day: date,
    rules: HealthRules,
) -> Standing:
    """A status set by hand, in the caller's transaction: the reason is kept, reports and
    missed days before it are no longer read, and the change is audited."""
    after = Standing(status, now, (Reason("override", "override", day, note=note),))
    await store.save_state(
        session,
        person,
        {
            "reasons": reasons_to_text(after.reasons),
            "rule_version": rules.version,
            "missed_days": 0,
            "floor_at": now,
        },
        now,
    )
    await store.set_status(
        session,
        person.person_id,
        person.status,
        after,
        day=day,
        now=now,
        cause="override",
        rule_version=rules.version,
        actor=actor,
    )
    audit.record(
        session,
        actor,
        "status_override",
        person.person_id,
        f"{person.status.value} -> {status.value}: {note}",
    )
    return after
