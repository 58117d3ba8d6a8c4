"""The day roll-over: count a missed report for everyone who did not report, then apply the rules.

Set-based: a handful of statements whatever the size of the campus. Every person without a
report that day has their missed-day count raised by one UPDATE; those are then read in one
query (with their recent reports in another, when a rule reads history), evaluated in memory,
and the changes written back in bulk. A day is rolled over once (health_rollovers); a missed
roll-over (the server was down) is caught up day by day, oldest first.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from campus.health import store
from campus.health.conditions import Facts, ReportsWithin, find_all
from campus.health.days import campus_day, day_start, days_back
from campus.health.days import now as clock_now
from campus.health.engine import assess
from campus.health.model import Report, reasons_to_text
from campus.health.responsibles import UnitTree
from campus.health.rules import HealthRules
from campus.health.warnings import Raise, Subject, WarningService
from storage.models import HealthReport, HealthRollover, HealthState, Person, StatusChange

MAX_CATCH_UP = 31  # days; older gaps are left alone rather than flooding everyone with warnings


@dataclass(frozen=True, slots=True)
class DayRolled:
    day: date
    missed: int
    changed: int
    warned: int
    skipped: bool = False


class RolloverService:
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

    async def run(self, now: datetime | None = None) -> list[DayRolled]:
        """Roll over every day up to yesterday that has not been."""
        now = now or clock_now(self._clock)
        yesterday = campus_day(now, self._tz) - timedelta(days=1)
        async with self._sessions() as session:
            last = await session.scalar(select(func.max(HealthRollover.day)))
        first = (
            yesterday
            if last is None
            else max(last + timedelta(days=1), yesterday - timedelta(days=MAX_CATCH_UP - 1))
        )
        results = []
        day = first
        while day <= yesterday:
            results.append(await self.roll(day, now))
            day += timedelta(days=1)
        return results

    async def roll(self, day: date, now: datetime) -> DayRolled:
        if day >= campus_day(now, self._tz):
            raise ValueError(f"day {day} has not ended yet")
        async with store.write_lock(self._sessions), self._sessions.begin() as session:
            if await session.get(HealthRollover, day) is not None:
                return DayRolled(day, 0, 0, 0, skipped=True)
            missed = await self._count_missed(session, day, now)
            changed, warned = await self._evaluate(session, day, now)
            session.add(
                HealthRollover(
                    day=day,
                    done_at=now,
                    missed=missed,
                    changed=changed,
                    rule_version=self.rules.version,
                )
            )
        return DayRolled(day, missed, changed, warned)

    async def _count_missed(self, session: AsyncSession, day: date, now: datetime) -> int:
        active = select(Person.id).where(Person.state == "active")
        await session.execute(
            insert(HealthState).from_select(
                ["person_id", "reasons", "rule_version", "missed_days", "updated_at"],
                select(
                    Person.id,
                    literal("[]"),
                    literal(""),
                    literal(0),
                    literal(now, HealthState.updated_at.type),
                ).where(
                    Person.state == "active",
                    ~exists().where(HealthState.person_id == Person.id),
                ),
            )
        )
        reported = exists().where(
            HealthReport.person_id == HealthState.person_id, HealthReport.day == day
        )
        result = await session.execute(
            update(HealthState)
            .where(
                or_(HealthState.rolled_day.is_(None), HealthState.rolled_day < day),
                HealthState.person_id.in_(
                    active.where(Person.created_at < day_start(day, self._tz))
                ),
                ~reported,
            )
            .values(missed_days=HealthState.missed_days + 1, rolled_day=day, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def _evaluate(self, session: AsyncSession, day: date, now: datetime) -> tuple[int, int]:
        missed_that_day = and_(
            HealthState.rolled_day == day,
            ~exists().where(HealthReport.person_id == Person.id, HealthReport.day == day),
        )
        rows = (await session.execute(store.person_select().where(missed_that_day))).all()
        if not rows:
            return 0, 0
        history = await self._history(session, day)
        persons: list[dict[str, Any]] = []
        states: list[dict[str, Any]] = []
        changes: list[dict[str, Any]] = []
        raises: list[Raise] = []
        for row in rows:
            person = store.person_from_row(row)
            reports = tuple(
                r
                for r in history.get(person.person_id, ())
                if person.floor_at is None
                or (r.submitted_at is not None and r.submitted_at > person.floor_at)
            )
            facts = Facts(day, None, reports, person.missed_days)
            result = assess(self.rules, person.standing, facts, now)
            after = result.standing
            if after == person.standing:
                continue
            states.append(
                {
                    "person_id": person.person_id,
                    "reasons": reasons_to_text(after.reasons),
                    "rule_version": self.rules.version,
                }
            )
            if after.status is not person.status:
                persons.append(
                    {"id": person.person_id, "status": after.status.value, "status_since": now}
                )
                changes.append(
                    {
                        "person_id": person.person_id,
                        "at": now,
                        "day": day,
                        "from_status": person.status.value,
                        "to_status": after.status.value,
                        "reasons": reasons_to_text(after.reasons),
                        "rule_version": self.rules.version,
                        "cause": "rollover",
                        "actor": "engine",
                    }
                )
            if result.new_causes:
                raises.append(Raise(Subject.of(person), result.new_causes, after))
        if states:
            await session.execute(update(HealthState), states)
        if persons:
            await session.execute(update(Person), persons)
        if changes:
            await session.execute(insert(StatusChange), changes)
        warned = 0
        if raises:
            tree = await UnitTree.load(session)
            warned = await self._warnings.raise_many(session, raises, now=now, tree=tree)
        return len(persons), warned

    async def _history(self, session: AsyncSession, day: date) -> dict[int, list[Report]]:
        """The recent reports of everyone who missed `day` that a history rule may count.

        Without a report that day, only history rules can fire and no recovery can happen,
        so only the reports matching some rule's `where` matter: usually none.
        """
        counted = [w for rule in self.rules.rules for w in find_all(rule.when, ReportsWithin)]
        if not counted:
            return {}
        first = days_back(day, max(w.days for w in counted))
        table = HealthReport.__table__
        stmt = (
            select(*(table.c[name] for name in store.REPORT_FIELDS))
            .join(HealthState, HealthState.person_id == HealthReport.person_id)
            .where(
                HealthState.rolled_day == day,
                HealthReport.day >= first,
                HealthReport.day < day,
                or_(*(store.where_sql(w.where) for w in counted)),
            )
            .order_by(HealthReport.person_id, HealthReport.day)
        )
        by_person: dict[int, list[Report]] = defaultdict(list)
        for row in await session.execute(stmt):  # plain rows: ORM objects cost 5× more here
            by_person[row.person_id].append(store.report_from_row(row))
        return by_person
