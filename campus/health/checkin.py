"""Daily check-in: record the day's report, evaluate it, update the status, warn.

One report per person per campus day: a second one replaces it (the first is kept as a
revision) and is evaluated again. It is evaluated from the status the person has now, so a
second report can raise a status but never undo one: only recovery days or a health officer
lower it (a typo of 38.5 for 36.5 is corrected by a health officer's override).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

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
from storage import raw
from storage.batching import Batcher, Failed

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class _Ask:
    person_id: int
    draft: Draft | None  # None: same as yesterday
    now: datetime


@dataclass(frozen=True, slots=True)
class _Plan:
    """A check-in decided, not yet written."""

    index: int
    person: store.PersonHealth
    day: date
    now: datetime
    report: Report
    source: str
    todays: store.StoredReport | None  # the day's report it replaces
    history: tuple[Report, ...]
    assessment: Assessment


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
        self._batches: Batcher[_Ask, CheckinResult] = Batcher(
            self._record_many, max_batch=100, name="checkins"
        )
        engine = sessions.kw.get("bind")
        self._engine = engine if isinstance(engine, AsyncEngine) else None
        self._raw = (
            store.RawCheckin(engine.dialect)
            if isinstance(engine, AsyncEngine) and raw.supported(engine)
            else None
        )

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
        return await self._batches.submit(_Ask(person_id, draft, clock_now(self._clock)))

    async def _record_many(self, asks: Sequence[_Ask]) -> list[CheckinResult | Failed]:
        """The check-ins that arrived together: one read, one multi-row write, one commit.

        A person asking twice in one batch is served in order: their second check-in is
        read in a second round, after the first one's writes.

        The common check-in (its report written as it is: no status or engine state to
        change, no warning) runs on the driver's connection (storage/raw.py), those of a
        batch together. The others, and a batch of several rounds, take the ORM session.
        Once the first part is committed, a failure of the second fails only its own
        check-ins: a retry of the whole batch would write the first part's reports again.
        """
        rounds: list[list[tuple[int, _Ask]]] = []
        for index, ask in enumerate(asks):
            for members in rounds:
                if all(other.person_id != ask.person_id for _, other in members):
                    members.append((index, ask))
                    break
            else:
                rounds.append([(index, ask)])
        results: dict[int, CheckinResult | Failed] = {}
        if self._raw is None or self._engine is None or len(rounds) > 1:
            results |= await self._record_session(rounds)
        else:
            written, rest = await self._record_raw(self._raw, self._engine, rounds[0])
            results |= written
            if rest:
                results |= await self._record_rest(rest)
        return [results[index] for index in range(len(asks))]

    async def _record_rest(self, rest: list[tuple[int, _Ask]]) -> dict[int, CheckinResult | Failed]:
        """The check-ins `_record_raw` left, after its commit: together, and if that fails,
        one by one, each failure its own caller's (as the Batcher does for a whole batch)."""
        try:
            return dict(await self._record_session([rest]))
        except Exception as exc:
            if len(rest) == 1:
                return {rest[0][0]: Failed(exc)}
            log.warning("%d check-ins failed together (%s); retrying one by one", len(rest), exc)
        results: dict[int, CheckinResult | Failed] = {}
        for one in rest:
            try:
                results |= await self._record_session([[one]])
            except Exception as exc:
                results[one[0]] = Failed(exc)
        return results

    async def _record_raw(
        self, statements: store.RawCheckin, engine: AsyncEngine, members: list[tuple[int, _Ask]]
    ) -> tuple[dict[int, CheckinResult], list[tuple[int, _Ask]]]:
        """One round on the driver's connection, for the check-ins that only write their
        report; the others are returned, unwritten, for `_record_session`."""
        results: dict[int, CheckinResult] = {}
        rest: list[tuple[int, _Ask]] = []
        # The lock (taken for the writes) is let go after the commit, as in _record_session.
        async with contextlib.AsyncExitStack() as stack, raw.transaction(engine) as tx:
            plans = await self._plan(_RawReads(statements, tx), members, results)
            asks = dict(members)
            rest += [(p.index, asks[p.index]) for p in plans if self._saves_anything(p)]
            plans = [p for p in plans if not self._saves_anything(p)]
            if plans:
                # Writers of this process queue here (SQLite), as in _record_session.
                await stack.enter_async_context(store.write_lock(engine))
                replacements = [
                    (p.todays, p.report, p.source, p.now) for p in plans if p.todays is not None
                ]
                if replacements:
                    await statements.replace_reports(tx, replacements)
                firsts = [
                    (p.person.person_id, p.report, p.source) for p in plans if p.todays is None
                ]
                if firsts:
                    await statements.insert_reports(tx, firsts)
            # Before the commit: nothing that can fail comes after it.
            for plan in plans:
                results[plan.index] = self._result(plan)
        return results, rest

    async def _record_session(
        self, rounds: list[list[tuple[int, _Ask]]]
    ) -> dict[int, CheckinResult]:
        results: dict[int, CheckinResult] = {}
        async with self._sessions() as session, contextlib.AsyncExitStack() as stack:
            locked = False
            for members in rounds:
                plans = await self._plan(_SessionReads(session), members, results)
                if plans and not locked:  # writers of this process queue here (SQLite)
                    await stack.enter_async_context(store.write_lock(self._sessions))
                    locked = True
                await self._write(session, plans, results)
            if locked:
                await session.commit()
        return results

    async def _plan(
        self, reads: _Reads, members: list[tuple[int, _Ask]], results: dict[int, CheckinResult]
    ) -> list[_Plan]:
        """Read the round's persons and decide each report (no writes yet)."""
        days = {campus_day(ask.now, self._tz) for _, ask in members}
        first_needed = min(
            min(days_back(day, self.rules.lookback_days), day - timedelta(days=1)) for day in days
        )
        found = await reads.load(
            sorted({ask.person_id for _, ask in members}), first_needed, max(days)
        )
        plans: list[_Plan] = []
        for index, ask in members:
            now = ask.now
            day = campus_day(now, self._tz)
            first = days_back(day, self.rules.lookback_days)
            entry = found.get(ask.person_id)
            if entry is None:
                results[index] = CheckinResult(Outcome.UNKNOWN_PERSON)
                continue
            person, stored = entry
            if not person.active:
                results[index] = CheckinResult(Outcome.INACTIVE)
                continue
            window = [r for r in stored if r.report.day <= day]
            todays = next((r for r in window if r.report.day == day), None)
            earlier = [r.report for r in window if r.report.day < day]
            draft = ask.draft
            if draft is None:
                yesterday = next((r for r in earlier if r.day == day - timedelta(days=1)), None)
                if yesterday is None:
                    results[index] = CheckinResult(Outcome.NOTHING_YESTERDAY, before=person.status)
                    continue
                report, source = yesterday.same_as(day, now), "same"
            else:
                location, region = draft.location, draft.region
                if location is None:
                    last = todays.report if todays else (earlier[-1] if earlier else None)
                    if last is None:
                        last = await reads.latest(ask.person_id, first)
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
            assessment = assess(self.rules, person.standing, Facts(day, report, history, 0), now)
            plans.append(
                _Plan(index, person, day, now, report, source, todays, history, assessment)
            )
        return plans

    async def _write(
        self, session: AsyncSession, plans: list[_Plan], results: dict[int, CheckinResult]
    ) -> None:
        """The round's reports: replacements and plain first reports go in one statement each;
        a report whose id a status change will point at is inserted on its own."""
        replacements = [p for p in plans if p.todays is not None]
        if replacements:
            await store.replace_reports(
                session,
                [
                    (p.todays, p.report, p.source, p.now)
                    for p in replacements
                    if p.todays is not None
                ],
            )
        plain = [p for p in plans if p.todays is None and not self._saves_anything(p)]
        if plain:
            await store.insert_reports(
                session, [(p.person.person_id, p.report, p.source) for p in plain]
            )
        for plan in plans:
            if plan.todays is not None:
                report_id: int | None = plan.todays.id
            elif self._saves_anything(plan):
                report_id = await store.insert_report(
                    session, plan.person.person_id, plan.report, plan.source
                )
            else:
                report_id = None
            if report_id is not None:
                await self._save(
                    session, plan.person, plan.day, plan.assessment, report_id, plan.now
                )
            results[plan.index] = self._result(plan)

    def _result(self, plan: _Plan) -> CheckinResult:
        return CheckinResult(
            Outcome.RECORDED,
            report=plan.report,
            before=plan.person.status,
            standing=plan.assessment.standing,
            replaced=plan.todays is not None,
            fired=plan.assessment.fired,
            forecast=forecast(self.rules, plan.assessment.standing, plan.history, plan.day, True),
        )

    def _saves_anything(self, plan: _Plan) -> bool:
        """Whether _save would write: a green person with nothing new writes only the report."""
        after, person = plan.assessment.standing, plan.person
        red = self.rules.recovery[Status.RED]
        return bool(
            after.reasons != person.reasons
            or person.missed_days
            or after.status is not person.status
            or plan.assessment.new_causes
            or (
                plan.assessment.awaiting_clearance
                and plan.assessment.normal_days == red.normal_days
            )
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


_Found = dict[int, tuple[store.PersonHealth, list[store.StoredReport]]]


class _Reads(Protocol):
    """What deciding a round reads: its persons with their recent reports; and a person's
    last report before that window, for a form that leaves out where."""

    async def load(self, person_ids: list[int], first: date, last: date) -> _Found: ...

    async def latest(self, person_id: int, before: date) -> Report | None: ...


@dataclass(frozen=True, slots=True)
class _SessionReads:
    session: AsyncSession

    async def load(self, person_ids: list[int], first: date, last: date) -> _Found:
        return await store.load_for_checkin(self.session, person_ids, first, last)

    async def latest(self, person_id: int, before: date) -> Report | None:
        return await store.latest_report(self.session, person_id, before)


@dataclass(frozen=True, slots=True)
class _RawReads:
    statements: store.RawCheckin
    tx: raw.Transaction

    async def load(self, person_ids: list[int], first: date, last: date) -> _Found:
        return await self.statements.load_for_checkin(self.tx, person_ids, first, last)

    async def latest(self, person_id: int, before: date) -> Report | None:
        return await self.statements.latest_report(self.tx, person_id, before)


def _after(report: Report, floor: datetime | None) -> bool:
    """Reports from before the last override are no longer read."""
    return floor is None or (report.submitted_at is not None and report.submitted_at > floor)
