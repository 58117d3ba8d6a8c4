"""Daily check-in: record the day's report, evaluate it, update the status, warn.

One report per person per campus day: a second one replaces it (the first is kept as a
revision) and is evaluated again. It is evaluated from the status the person has now, so a
second report can raise a status but never undo one: only recovery days or a health officer
lower it (a typo of 38.5 for 36.5 is corrected by a health officer's override).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from campus.health import store
from campus.health.conditions import Facts
from campus.health.days import campus_day, days_back
from campus.health.days import now as clock_now
from campus.health.engine import Assessment, Forecast, assess, forecast
from campus.health.model import (
    LOCATIONS,
    SYMPTOMS,
    Reason,
    Report,
    Standing,
    Status,
    reasons_to_text,
)
from campus.health.rules import HealthRules
from campus.health.warnings import Raise, Subject, WarningService


@dataclass(frozen=True, slots=True)
class Draft:
    """A report as given. `location` None: where the last report said (on campus if none)."""

    temperature: int
    symptoms: frozenset[str] = frozenset()
    location: str | None = None
    region: str = ""
    contact: bool = False
    travel: bool = False
    source: str = "form"  # quick | form | same

    def __post_init__(self) -> None:
        unknown = self.symptoms - set(SYMPTOMS)
        if unknown:
            raise ValueError(f"unknown symptom {sorted(unknown)[0]!r}")
        if self.location is not None and self.location not in LOCATIONS:
            raise ValueError(f"unknown location {self.location!r}")


class Outcome(Enum):
    RECORDED = "recorded"
    UNKNOWN_PERSON = "unknown_person"
    INACTIVE = "inactive"
    NOTHING_YESTERDAY = "nothing_yesterday"  # "same as yesterday" without a report yesterday


@dataclass(frozen=True, slots=True)
class CheckinResult:
    outcome: Outcome
    report: Report | None = None
    before: Status = Status.GREEN
    standing: Standing | None = None
    replaced: bool = False
    fired: tuple[Reason, ...] = ()
    forecast: Forecast | None = None


@dataclass(frozen=True, slots=True)
class Today:
    """What the check-in's first question needs: today's report, and yesterday's to repeat."""

    day: date
    today: Report | None
    yesterday: Report | None


class CheckinService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: HealthRules,
        warnings: WarningService,
        clock: Clock,
        tz: ZoneInfo,
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self._warnings = warnings
        self._clock = clock
        self._tz = tz

    def today_is(self) -> date:
        return campus_day(clock_now(self._clock), self._tz)

    async def today(self, person_id: int) -> Today:
        day = self.today_is()
        async with self._sessions() as session:
            rows = await store.reports_between(session, person_id, day - timedelta(days=1), day)
        by_day = {r.report.day: r.report for r in rows}
        return Today(day, by_day.get(day), by_day.get(day - timedelta(days=1)))

    async def submit(self, person_id: int, draft: Draft) -> CheckinResult:
        return await self._record(person_id, draft)

    async def same_as_yesterday(self, person_id: int) -> CheckinResult:
        return await self._record(person_id, None)

    async def _record(self, person_id: int, draft: Draft | None) -> CheckinResult:
        now = clock_now(self._clock)
        day = campus_day(now, self._tz)
        first = days_back(day, self.rules.lookback_days)
        # The hot path: one query to read, one or two statements to write, one commit.
        async with self._sessions() as session:
            person, window = await store.load_for_checkin(
                session, person_id, min(first, day - timedelta(days=1)), day
            )
            if person is None:
                return CheckinResult(Outcome.UNKNOWN_PERSON)
            if not person.active:
                return CheckinResult(Outcome.INACTIVE)
            todays = next((r for r in window if r.report.day == day), None)
            earlier = [r.report for r in window if r.report.day < day]
            if draft is None:
                yesterday = next((r for r in earlier if r.day == day - timedelta(days=1)), None)
                if yesterday is None:
                    return CheckinResult(Outcome.NOTHING_YESTERDAY, before=person.status)
                report, source = yesterday.same_as(day, now), "same"
            else:
                location, region = draft.location, draft.region
                if location is None:
                    last = todays.report if todays else (earlier[-1] if earlier else None)
                    if last is None:
                        last = await store.latest_report(session, person_id, first)
                    location = last.location if last else "campus"
                    region = last.region if last else ""
                report = Report(
                    day=day,
                    temperature=draft.temperature,
                    symptoms=draft.symptoms,
                    location=location,
                    region=region if location == "elsewhere" else "",
                    contact=draft.contact,
                    travel=draft.travel,
                    submitted_at=now,
                )
                source = draft.source
            kept = [r for r in earlier if r.day >= first and _after(r, person.floor_at)]
            history = (*kept, report)
            facts = Facts(day, report, history, 0)
            assessment = assess(self.rules, person.standing, facts, now)
            async with store.write_lock(self._sessions):
                if todays is None:
                    report_id = await store.insert_report(session, person_id, report, source)
                else:
                    report_id = todays.id
                    await store.replace_report(session, todays, report, source, now)
                await self._save(session, person, day, assessment, report_id, now)
                await session.commit()
        return CheckinResult(
            Outcome.RECORDED,
            report=report,
            before=person.status,
            standing=assessment.standing,
            replaced=todays is not None,
            fired=assessment.fired,
            forecast=forecast(self.rules, assessment.standing, history, day, True),
        )

    async def _save(
        self,
        session: AsyncSession,
        person: store.PersonHealth,
        day: date,
        assessment: Assessment,
        report_id: int,
        now: datetime,
    ) -> None:
        after = assessment.standing
        values: dict[str, object] = {}
        if after.reasons != person.reasons:
            values |= {
                "reasons": reasons_to_text(after.reasons),
                "rule_version": self.rules.version,
            }
        if person.missed_days:
            values["missed_days"] = 0
        if values:  # a green person with nothing missed has nothing to write here
            await store.save_state(session, person, values, now)
        if after.status is not person.status:
            await store.set_status(
                session,
                person.person_id,
                person.status,
                after,
                day=day,
                now=now,
                cause="report",
                rule_version=self.rules.version,
                report_id=report_id,
            )
        if assessment.new_causes:
            await self._warnings.raise_many(
                session,
                [Raise(Subject.of(person), assessment.new_causes, after)],
                now=now,
            )
        red = self.rules.recovery[Status.RED]
        if assessment.awaiting_clearance and assessment.normal_days == red.normal_days:
            await self._warnings.ask_for_clearance(session, Subject.of(person), after, now=now)


def _after(report: Report, floor: datetime | None) -> bool:
    """Reports from before the last override are no longer read."""
    return floor is None or (report.submitted_at is not None and report.submitted_at > floor)
