"""Who may apply to return: a green student of an eligible unit, not back yet, with enough
consecutive days of check-ins. Every reason a student may not is named, so they can be told
exactly what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campus.returns.batches import BatchInfo, ancestors, batches_for
from storage.models import HealthReport, Person
from storage.models_returns import ReturnApplication

# A streak is looked for this far back; longer streaks count as this long.
STREAK_HORIZON = 90


class Problem(Enum):
    NOT_STUDENT = "not_student"
    INACTIVE = "inactive"
    RETURNED = "returned"  # back on campus already
    OPEN_APPLICATION = "open_application"
    STATUS = "status"  # not green
    CHECKINS = "checkins"  # too few consecutive days of check-ins
    NO_BATCH = "no_batch"  # no batch open to the student's unit


@dataclass(frozen=True, slots=True)
class Eligibility:
    problems: tuple[Problem, ...]
    status: str
    checkin_days: int
    needed_days: int
    batches: tuple[BatchInfo, ...]
    open_application: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def days_missing(self) -> int:
        return max(0, self.needed_days - self.checkin_days)


async def checkin_streak(session: AsyncSession, person_id: int, today: date) -> int:
    """Consecutive days with a report, ending today (or yesterday, if today's is not in yet)."""
    days = set(
        (
            await session.execute(
                select(HealthReport.day).where(
                    HealthReport.person_id == person_id,
                    HealthReport.day >= today - timedelta(days=STREAK_HORIZON),
                    HealthReport.day <= today,
                )
            )
        ).scalars()
    )
    day = today if today in days else today - timedelta(days=1)
    streak = 0
    while day in days:
        streak += 1
        day -= timedelta(days=1)
    return streak


async def check(
    session: AsyncSession, person: Person, today: date, needed_days: int
) -> Eligibility:
    problems: list[Problem] = []
    if person.category != "student":
        problems.append(Problem.NOT_STUDENT)
    if person.state != "active":
        problems.append(Problem.INACTIVE)
    if person.returned_at is not None:
        problems.append(Problem.RETURNED)
    open_id = await session.scalar(
        select(ReturnApplication.id).where(
            ReturnApplication.person_id == person.id, ReturnApplication.live == 1
        )
    )
    if open_id is not None:
        problems.append(Problem.OPEN_APPLICATION)
    if person.status != "green":
        problems.append(Problem.STATUS)
    streak = await checkin_streak(session, person.id, today)
    if streak < needed_days:
        problems.append(Problem.CHECKINS)
    batches = await batches_for(session, await ancestors(session, person.unit_id), today)
    if not batches:
        problems.append(Problem.NO_BATCH)
    return Eligibility(
        problems=tuple(problems),
        status=person.status,
        checkin_days=streak,
        needed_days=needed_days,
        batches=tuple(batches),
        open_application=open_id,
    )
