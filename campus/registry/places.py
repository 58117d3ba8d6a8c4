"""Import of places.csv: the place tree (campus, grids, houses, buildings, gates) and policies."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from campus.registry import fields
from campus.registry.bulk import Advance, write_linked
from campus.registry.csvfile import Rows
from campus.registry.report import ImportReport
from campus.registry.tree import Node, check_tree, stored_tree
from storage.models import Place


@dataclass(slots=True)
class PlaceRow:
    line: int
    code: str
    name: str
    kind: str
    parent_code: str | None
    policy: str

    @property
    def key(self) -> str:
        return self.code

    @property
    def ref(self) -> str | None:
        return self.parent_code


@dataclass
class PlacePlan:
    ids: dict[str, int]
    creates: list[PlaceRow] = field(default_factory=list)
    updates: list[tuple[int, PlaceRow]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates)

    async def write(self, session: AsyncSession, now: datetime, advance: Advance) -> None:
        await write_linked(
            session,
            Place,
            key="code",
            ref="parent_id",
            creates=self.creates,
            updates=self.updates,
            values=_values,
            ids=self.ids,
            now=now,
            advance=advance,
        )


def _values(row: PlaceRow) -> dict[str, Any]:
    return {"name": row.name, "kind": row.kind, "policy": row.policy}


async def prepare_places(
    session: AsyncSession, rows: Rows, report: ImportReport, policies: Collection[str]
) -> PlacePlan:
    policy_check = fields.policy_in(policies)
    stored = await stored_tree(session, Place, "name", "kind", "policy")
    parsed: list[PlaceRow] = []
    nodes: list[Node] = []
    for line, row in report.rows_of(rows):
        check = fields.RowCheck(report, line, row)
        code = check("code", fields.code)
        name = check("name", fields.name)
        kind = check("kind", fields.place_kind)
        parent_code = check("parent_code", fields.optional_code)
        policy = check("policy", policy_check)
        if code is not None:
            nodes.append(Node(line, code, parent_code))
        if check.ok:
            assert code is not None and name is not None and kind is not None
            assert policy is not None
            parsed.append(PlaceRow(line, code, name, kind, parent_code, policy))
    check_tree(nodes, {code: node[1] for code, node in stored.items()}, report, "place")

    plan = PlacePlan(ids={code: node[0] for code, node in stored.items()})
    if not report.ok:
        return plan
    for place in parsed:
        if place.code not in stored:
            plan.creates.append(place)
            continue
        place_id, parent_code, values = stored[place.code]
        if (*values, parent_code) == (place.name, place.kind, place.policy, place.parent_code):
            report.unchanged += 1
        else:
            plan.updates.append((place_id, place))
    report.created, report.updated = len(plan.creates), len(plan.updates)
    return plan
