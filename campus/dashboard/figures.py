"""The dashboard's figures for one unit of the tree: totals, one row per sub-unit, the panels.

Built from the aggregate queries (campus/dashboard/queries.py and the returns and meals
summaries); rows per unit are rolled up the tree here, a loop over units, never over persons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from campus.dashboard import queries
from campus.dashboard.history import DailyReports
from campus.dashboard.units import UnitIndex
from campus.health.days import day_start
from campus.identity import mask_name
from campus.meals.summary import SlotCount, slot_counts
from campus.returns.stats import BatchProgress, batch_progress

DAYS = 14  # the trend window
WARNINGS_SHOWN = 20
STATUSES = ("green", "yellow", "red")
DIRECT = -1  # the row key of persons attached to the focus unit itself


@dataclass
class UnitFigures:
    """One unit (with everything below it), or the persons directly in the focus unit."""

    key: int  # unit id; DIRECT for the focus unit's own members; 0 for the whole scope
    code: str
    name: str
    drillable: bool = False
    persons: int = 0
    returned: int = 0
    status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    daily: list[int] = field(default_factory=lambda: [0] * DAYS)  # reports, oldest day first
    open_warnings: int = 0
    acked_warnings: int = 0

    @property
    def reported_today(self) -> int:
        return self.daily[-1]

    def rate(self, reports: int | None = None) -> float | None:
        """Reports over active persons (today's, or the given day's count); None: nobody."""
        count = self.reported_today if reports is None else reports
        return min(1.0, count / self.persons) if self.persons else None

    @property
    def rates(self) -> list[float | None]:
        return [self.rate(n) for n in self.daily]

    @property
    def abnormal(self) -> int:
        return sum(n for s, n in self.status.items() if s != "green")

    def add(self, other: UnitFigures) -> None:
        self.persons += other.persons
        self.returned += other.returned
        for s, n in other.status.items():
            self.status[s] = self.status.get(s, 0) + n
        self.daily = [a + b for a, b in zip(self.daily, other.daily, strict=True)]
        self.open_warnings += other.open_warnings
        self.acked_warnings += other.acked_warnings


@dataclass(frozen=True, slots=True)
class WarningLine:
    warning_id: int
    person_id: int  # for the audit trail; never shown
    masked_name: str
    unit: str
    day: date
    cause: str
    status: str
    level: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MealSlot:
    canteen: str
    slot: str
    ordered: int
    capacity: int
    orders: int


@dataclass
class Dashboard:
    today: date
    days: list[date]
    focus: UnitFigures
    path: list[tuple[str, str]]  # (code, name) from the top of the scope to the focus
    rows: list[UnitFigures]
    warnings: list[WarningLine]
    gates: list[queries.GateRow]
    batches: list[BatchProgress]
    meals: list[MealSlot]
    everything: bool  # the focus is the whole campus (meals and gate totals are campus-wide)


@dataclass(frozen=True, slots=True)
class Focus:
    """What to show: a unit (with its sub-units as rows) or the top of a scope."""

    unit_id: int | None  # None: the top of the scope
    tops: tuple[int, ...]  # the scope's top units (rows when unit_id is None)
    everything: bool  # the scope is the whole campus


async def build(
    session: AsyncSession,
    index: UnitIndex,
    focus: Focus,
    today: date,
    tz: ZoneInfo,
    *,
    history: DailyReports | None = None,
    now: datetime | None = None,
) -> Dashboard:
    """The figures; `history` (with `now`) serves finished days from memory."""
    if focus.unit_id is not None:
        unit = index.units[focus.unit_id]
        total = UnitFigures(unit.id, unit.code, unit.name)
        children = index.children.get(unit.id, [])
        row_of = {unit.id: DIRECT}
        keys = [*children, DIRECT]
    else:
        total = UnitFigures(0, "", "")
        children = list(focus.tops)
        row_of = {}
        keys = list(children)
    for child in children:
        for u in index.subtree(child):
            row_of[u] = child
    rows: dict[int, UnitFigures] = {}
    for key in keys:
        if key == DIRECT:
            rows[key] = UnitFigures(DIRECT, total.code, total.name)
        else:
            info = index.units[key]
            rows[key] = UnitFigures(
                key, info.code, info.name, drillable=bool(index.children.get(key))
            )
    # No unit filter when the focus covers the whole campus: the plain GROUP BY is cheaper
    # than an IN list of every unit.
    everything = focus.everything and (focus.unit_id is None or len(row_of) == len(index.units))
    units = None if everything else sorted(row_of)

    first = today - timedelta(days=DAYS - 1)
    days = [first + timedelta(days=i) for i in range(DAYS)]
    for r in await queries.persons_by_status(session, units, today):
        target = row_of.get(r.unit_id)
        if target is None:
            continue
        row = rows[target]
        row.persons += r.persons
        row.returned += r.returned
        row.status[r.status] = row.status.get(r.status, 0) + r.persons
        row.daily[-1] += r.reported
    # Finished days from the history (when given), the live day(s) from the reports table.
    live_from = first
    if history is not None and now is not None:
        settled = DailyReports.last_settled(today, now, tz)
        if settled >= first:
            for day, counts in (await history.settled(session, first, settled)).items():
                slot = (day - first).days
                for unit_id, n in counts.items():
                    target = row_of.get(unit_id)
                    if target is not None:
                        rows[target].daily[slot] += n
            live_from = settled + timedelta(days=1)
    yesterday = today - timedelta(days=1)
    if live_from <= yesterday:  # just after midnight, or without a history
        for unit_id, day, n in await queries.reports_by_day(session, units, live_from, yesterday):
            target = row_of.get(unit_id)
            if target is not None:
                rows[target].daily[(day - first).days] += n
    for unit_id, open_, acked in await queries.warnings_by_unit(session, units, first):
        target = row_of.get(unit_id)
        if target is not None:
            rows[target].open_warnings += open_
            rows[target].acked_warnings += acked
    for row in rows.values():
        total.add(row)
    shown = [
        rows[k]
        for k in sorted(rows, key=lambda k: "" if k == DIRECT else index.units[k].code)
        if k != DIRECT or rows[k].persons
    ]

    warnings = [
        WarningLine(
            w.warning_id,
            w.person_id,
            mask_name(w.name),
            index.units[w.unit_id].name if w.unit_id in index.units else "",
            w.day,
            w.cause,
            w.status,
            w.level,
            w.created_at,
        )
        for w in await queries.open_warnings(session, units, WARNINGS_SHOWN)
    ]
    gates = await queries.gate_entries(session, units, day_start(today, tz))
    batches = await batch_progress(session, unit_ids=units, today=today)
    meals = _meal_slots(await slot_counts(session, day=today))
    path = _path(index, focus)
    return Dashboard(
        today=today,
        days=days,
        focus=total,
        path=path,
        rows=shown,
        warnings=warnings,
        gates=gates,
        batches=batches,
        meals=meals,
        everything=everything,
    )


def _meal_slots(items: list[SlotCount]) -> list[MealSlot]:
    slots: dict[tuple[str, str], list[int]] = {}
    for item in items:
        counts = slots.setdefault((item.canteen_name, item.slot), [0, 0, 0])
        counts[0] += item.ordered
        counts[1] += item.capacity
        counts[2] += item.orders
    return [MealSlot(c, s, o, cap, n) for (c, s), (o, cap, n) in slots.items()]


def _path(index: UnitIndex, focus: Focus) -> list[tuple[str, str]]:
    if focus.unit_id is None:
        return []
    chain = index.chain(focus.unit_id)
    tops = set(focus.tops)
    path = []
    for unit in chain:
        path.append((index.units[unit].code, index.units[unit].name))
        if unit in tops:
            break
    return list(reversed(path))
