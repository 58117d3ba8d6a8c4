"""Who answers for a person: the responsible persons up the unit tree, nearest unit first."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Person, Unit, UnitResponsible

MAX_DEPTH = 30  # a unit tree deeper than this is a data error; stop rather than loop


@dataclass(frozen=True, slots=True)
class Recipient:
    person_id: int
    locale: str


@dataclass
class UnitTree:
    parents: dict[int, int | None] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)
    responsibles: dict[int, list[Recipient]] = field(default_factory=lambda: defaultdict(list))

    def chain(self, unit_id: int) -> list[int]:
        """The unit, its parent, … up to the root."""
        units: list[int] = []
        current: int | None = unit_id
        while current is not None and current not in units and len(units) < MAX_DEPTH:
            units.append(current)
            current = self.parents.get(current)
        return units

    def levels(self, unit_id: int, exclude: Iterable[int] = ()) -> list[list[Recipient]]:
        """Responsible persons by level: the nearest unit that has any, then the next up, …"""
        skip = set(exclude)
        levels = []
        for unit in self.chain(unit_id):
            people = [r for r in self.responsibles.get(unit, []) if r.person_id not in skip]
            if people:
                levels.append(people)
                skip.update(r.person_id for r in people)
        return levels

    def subtree_units(self) -> dict[int, list[int]]:
        """unit -> every unit at or below it (for counting a responsible person's people)."""
        below: dict[int, list[int]] = defaultdict(list)
        for unit in self.parents:
            for ancestor in self.chain(unit):
                below[ancestor].append(unit)
        return below

    @classmethod
    async def load(cls, session: AsyncSession) -> UnitTree:
        """The whole tree (a few thousand units at most) and every unit's responsible persons."""
        tree = cls()
        for unit_id, parent_id, name in await session.execute(
            select(Unit.id, Unit.parent_id, Unit.name)
        ):
            tree.parents[unit_id] = parent_id
            tree.names[unit_id] = name
        await tree._load_responsibles(session, None)
        return tree

    @classmethod
    async def for_unit(cls, session: AsyncSession, unit_id: int) -> UnitTree:
        """Only the chain from `unit_id` to the root, in one recursive query."""
        parent = aliased(Unit)
        chain = (
            select(Unit.id, Unit.parent_id, Unit.name, literal(0).label("depth"))
            .where(Unit.id == unit_id)
            .cte("chain", recursive=True)
        )
        chain = chain.union_all(
            select(parent.id, parent.parent_id, parent.name, chain.c.depth + 1).where(
                parent.id == chain.c.parent_id, chain.c.depth < MAX_DEPTH
            )
        )
        tree = cls()
        for uid, parent_id, name, _depth in await session.execute(select(chain)):
            tree.parents[uid] = parent_id
            tree.names[uid] = name
        await tree._load_responsibles(session, list(tree.parents))
        return tree

    async def _load_responsibles(self, session: AsyncSession, units: list[int] | None) -> None:
        stmt = (
            select(UnitResponsible.unit_id, Person.id, Person.locale)
            .join(Person, Person.person_no == UnitResponsible.person_no)
            .where(Person.state == "active")
            .order_by(UnitResponsible.unit_id, Person.id)
        )
        if units is not None:
            stmt = stmt.where(UnitResponsible.unit_id.in_(units))
        for unit, person_id, locale in await session.execute(stmt):
            self.responsibles[unit].append(Recipient(person_id, locale))
