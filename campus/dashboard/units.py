"""The unit tree in memory (a few thousand rows): subtrees, ancestry and drill-down paths."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Unit, UnitResponsible

MAX_DEPTH = 30  # a deeper tree is a data error; stop rather than loop


@dataclass(frozen=True, slots=True)
class UnitInfo:
    id: int
    code: str
    name: str
    parent_id: int | None


@dataclass
class UnitIndex:
    units: dict[int, UnitInfo] = field(default_factory=dict)
    children: dict[int | None, list[int]] = field(default_factory=dict)
    by_code: dict[str, int] = field(default_factory=dict)

    @classmethod
    async def load(cls, session: AsyncSession) -> UnitIndex:
        rows = await session.execute(
            select(Unit.id, Unit.code, Unit.name, Unit.parent_id).order_by(Unit.code)
        )
        return cls.of(UnitInfo(r[0], r[1], r[2], r[3]) for r in rows)

    @classmethod
    def of(cls, units: Iterable[UnitInfo]) -> UnitIndex:
        index = cls()
        for unit in units:
            index.units[unit.id] = unit
            index.by_code[unit.code] = unit.id
        for unit in index.units.values():
            parent = unit.parent_id if unit.parent_id in index.units else None
            index.children.setdefault(parent, []).append(unit.id)
        return index

    @property
    def roots(self) -> list[int]:
        return list(self.children.get(None, []))

    def chain(self, unit_id: int) -> list[int]:
        """The unit, its parent, … up to its root."""
        found: list[int] = []
        current: int | None = unit_id
        while current is not None and current in self.units and len(found) < MAX_DEPTH:
            if current in found:
                break
            found.append(current)
            current = self.units[current].parent_id
        return found

    def subtree(self, unit_id: int) -> list[int]:
        """The unit and every unit below it."""
        found, stack, seen = [], [unit_id], set()
        while stack:
            unit = stack.pop()
            if unit in seen or unit not in self.units:
                continue
            seen.add(unit)
            found.append(unit)
            stack.extend(self.children.get(unit, ()))
        return found

    def covering(self, unit_ids: Collection[int]) -> set[int]:
        """Every unit at or below any of `unit_ids`."""
        covered: set[int] = set()
        for unit in unit_ids:
            if unit not in covered:
                covered.update(self.subtree(unit))
        return covered

    def top_of(self, unit_ids: Collection[int]) -> list[int]:
        """The units of `unit_ids` that no other of them contains, by code."""
        given = set(unit_ids)
        tops = [u for u in given if u in self.units and not (set(self.chain(u)[1:]) & given)]
        return sorted(tops, key=lambda u: self.units[u].code)


async def responsible_units(session: AsyncSession, person_no: str) -> list[int]:
    """The units a person is named responsible for (units.csv responsible_nos)."""
    rows = await session.execute(
        select(UnitResponsible.unit_id)
        .where(UnitResponsible.person_no == person_no)
        .order_by(UnitResponsible.unit_id)
    )
    return [int(r[0]) for r in rows]
