"""Import of units.csv: the unit tree and the persons responsible for each unit."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from campus.registry import fields
from campus.registry.bulk import Advance, chunks, table_of, write_linked
from campus.registry.csvfile import Rows
from campus.registry.report import ImportReport
from campus.registry.tree import Node, check_tree, stored_tree
from storage.models import Unit, UnitResponsible


@dataclass(slots=True)
class UnitRow:
    line: int
    code: str
    name: str
    parent_code: str | None
    responsible_nos: tuple[str, ...]

    @property
    def key(self) -> str:
        return self.code

    @property
    def ref(self) -> str | None:
        return self.parent_code


@dataclass
class UnitPlan:
    ids: dict[str, int]
    creates: list[UnitRow] = field(default_factory=list)
    updates: list[tuple[int, UnitRow]] = field(default_factory=list)
    # Units whose set of responsible persons is replaced (all new units with any).
    new_responsibles: list[UnitRow] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates)

    async def write(self, session: AsyncSession, now: datetime, advance: Advance) -> None:
        await write_linked(
            session,
            Unit,
            key="code",
            ref="parent_id",
            creates=self.creates,
            updates=self.updates,
            values=_values,
            ids=self.ids,
            now=now,
            advance=advance,
        )
        unit_ids = [self.ids[row.code] for row in self.new_responsibles]
        for part in chunks(unit_ids):
            await session.execute(delete(UnitResponsible).where(UnitResponsible.unit_id.in_(part)))
        pairs = [
            {"unit_id": self.ids[row.code], "person_no": no}
            for row in self.new_responsibles
            for no in row.responsible_nos
        ]
        for pairs_part in chunks(pairs):
            await session.execute(insert(table_of(UnitResponsible)), pairs_part)


def _values(row: UnitRow) -> dict[str, Any]:
    return {"name": row.name}


async def prepare_units(session: AsyncSession, rows: Rows, report: ImportReport) -> UnitPlan:
    stored = await stored_tree(session, Unit, "name")
    held: dict[int, list[str]] = defaultdict(list)
    for unit_id, person_no in await session.execute(
        select(UnitResponsible.unit_id, UnitResponsible.person_no)
    ):
        held[unit_id].append(person_no)

    parsed: list[UnitRow] = []
    nodes: list[Node] = []
    for line, row in report.rows_of(rows):
        check = fields.RowCheck(report, line, row)
        code = check("code", fields.code)
        name = check("name", fields.name)
        parent_code = check("parent_code", fields.optional_code)
        responsible_nos = check("responsible_nos", fields.person_nos)
        if code is not None:
            nodes.append(Node(line, code, parent_code))
        if check.ok:
            assert code is not None and name is not None and responsible_nos is not None
            parsed.append(UnitRow(line, code, name, parent_code, responsible_nos))
    check_tree(nodes, {code: node[1] for code, node in stored.items()}, report, "unit")

    plan = UnitPlan(ids={code: node[0] for code, node in stored.items()})
    if not report.ok:
        return plan
    for unit in parsed:
        if unit.code not in stored:
            plan.creates.append(unit)
            if unit.responsible_nos:
                plan.new_responsibles.append(unit)
            continue
        unit_id, parent_code, (name,) = stored[unit.code]
        same_responsibles = tuple(sorted(held.get(unit_id, ()))) == unit.responsible_nos
        if not same_responsibles:
            plan.new_responsibles.append(unit)
        if same_responsibles and (name, parent_code) == (unit.name, unit.parent_code):
            report.unchanged += 1
        else:
            plan.updates.append((unit_id, unit))
    report.created, report.updated = len(plan.creates), len(plan.updates)
    return plan
