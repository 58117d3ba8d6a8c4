"""Each return batch's progress, by aggregate SQL (`healthbot stats returns`, the dashboard).

A handful of GROUP BY queries whatever the number of applications: counts by batch and state,
arrivals by batch and campus day, and what is expected today.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from sqlalchemy import Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Person
from storage.models_returns import ReturnApplication, ReturnBatch

S = TypeVar("S", bound=Select)

STATES = ("pending", "approved", "rejected", "withdrawn", "arrived")


@dataclass(frozen=True, slots=True)
class BatchProgress:
    code: str
    name: str
    kind: str
    arrive_from: date
    arrive_to: date
    daily_quota: int
    applied: int  # every application not withdrawn
    pending: int
    approved: int  # approved so far, arrived or not
    rejected: int
    withdrawn: int
    arrived: int
    expected_today: int  # approved for today and not arrived yet
    arrived_today: int
    arrivals_by_day: tuple[tuple[date, int], ...] = field(default=())

    @property
    def quota(self) -> int:
        """Places over the whole window."""
        return self.daily_quota * ((self.arrive_to - self.arrive_from).days + 1)

    def phase(self, today: date) -> str:
        if today < self.arrive_from:
            return "upcoming"
        return "open" if today <= self.arrive_to else "closed"


def _scoped(stmt: S, unit_ids: Collection[int] | None) -> S:
    if unit_ids is None:
        return stmt
    return stmt.join(Person, Person.id == ReturnApplication.person_id).where(
        Person.unit_id.in_(list(unit_ids))
    )


async def batch_progress(
    session: AsyncSession, *, unit_ids: Collection[int] | None, today: date
) -> list[BatchProgress]:
    """Every batch, earliest window first; counts only applicants in `unit_ids` (None: all)."""
    batches = (
        await session.execute(
            select(ReturnBatch).order_by(ReturnBatch.arrive_from, ReturnBatch.code)
        )
    ).scalars()
    by_state: dict[tuple[int, str], int] = {}
    states = select(ReturnApplication.batch_id, ReturnApplication.state, func.count()).group_by(
        ReturnApplication.batch_id, ReturnApplication.state
    )
    for batch_id, state, n in await session.execute(_scoped(states, unit_ids)):
        by_state[(batch_id, state)] = int(n)
    days: dict[int, list[tuple[date, int]]] = {}
    per_day = (
        select(ReturnApplication.batch_id, ReturnApplication.arrived_on, func.count())
        .where(ReturnApplication.arrived_on.is_not(None))
        .group_by(ReturnApplication.batch_id, ReturnApplication.arrived_on)
        .order_by(ReturnApplication.batch_id, ReturnApplication.arrived_on)
    )
    for batch_id, day, n in await session.execute(_scoped(per_day, unit_ids)):
        if day is not None:
            days.setdefault(batch_id, []).append((day, int(n)))
    expected: dict[int, int] = {}
    due = (
        select(ReturnApplication.batch_id, func.count())
        .where(and_(ReturnApplication.state == "approved", ReturnApplication.arrive_on == today))
        .group_by(ReturnApplication.batch_id)
    )
    for batch_id, n in await session.execute(_scoped(due, unit_ids)):
        expected[batch_id] = int(n)

    result = []
    for batch in batches:

        def count(state: str, batch_id: int = batch.id) -> int:
            return by_state.get((batch_id, state), 0)

        arrivals = tuple(days.get(batch.id, ()))
        result.append(
            BatchProgress(
                code=batch.code,
                name=batch.name,
                kind=batch.kind,
                arrive_from=batch.arrive_from,
                arrive_to=batch.arrive_to,
                daily_quota=batch.daily_quota,
                applied=sum(count(s) for s in STATES if s != "withdrawn"),
                pending=count("pending"),
                approved=count("approved") + count("arrived"),
                rejected=count("rejected"),
                withdrawn=count("withdrawn"),
                arrived=count("arrived"),
                expected_today=expected.get(batch.id, 0),
                arrived_today=next((n for d, n in arrivals if d == today), 0),
                arrivals_by_day=arrivals,
            )
        )
    return result


def render(progress: list[BatchProgress], today: date) -> str:
    """The plain-text table `healthbot stats returns` prints (an operator's tool, in English)."""
    if not progress:
        return "no return batches (healthbot import batches FILE.csv)"
    header = (
        f"{'batch':<12} {'window':<23} {'phase':<8} {'quota/d':>7} {'applied':>7} "
        f"{'pending':>7} {'approved':>8} {'rejected':>8} {'arrived':>7} {'today':>9}"
    )
    lines = [header, "-" * len(header)]
    totals = [0, 0, 0, 0, 0]
    for p in progress:
        window = f"{p.arrive_from}–{p.arrive_to}"
        today_col = f"{p.arrived_today}/{p.arrived_today + p.expected_today}"
        lines.append(
            f"{p.code[:12]:<12} {window:<23} {p.phase(today):<8} {p.daily_quota:>7} "
            f"{p.applied:>7} {p.pending:>7} {p.approved:>8} {p.rejected:>8} {p.arrived:>7} "
            f"{today_col:>9}"
        )
        for i, n in enumerate((p.applied, p.pending, p.approved, p.rejected, p.arrived)):
            totals[i] += n
    lines.append("-" * len(header))
    lines.append(
        f"{'total':<12} {'':<23} {'':<8} {'':>7} {totals[0]:>7} {totals[1]:>7} "
        f"{totals[2]:>8} {totals[3]:>8} {totals[4]:>7}"
    )
    arrivals = [(p.code, d, n) for p in progress for d, n in p.arrivals_by_day]
    if arrivals:
        lines.append("")
        lines.append("arrivals per day")
        for code, day, n in arrivals:
            lines.append(f"  {code[:12]:<12} {day}  {n:>6}")
    lines.append("")
    lines.append("today: arrived/expected on " + str(today))
    return "\n".join(lines)
