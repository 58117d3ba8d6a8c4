"""Checks for the unit and place trees: parents exist, no duplicates, no cycles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from campus.registry.bulk import Model, table_of
from campus.registry.report import ImportReport


@dataclass(frozen=True, slots=True)
class Node:
    line: int
    code: str
    parent_code: str | None


def check_tree(
    nodes: Sequence[Node],
    stored: Mapping[str, str | None],
    report: ImportReport,
    what: str,
) -> None:
    """Report repeated codes, unknown or self parents, and cycles in the tree after the import.

    `stored` maps each code in the database to its parent code; a row of the file replaces the
    stored node of the same code.
    """
    first_line: dict[str, int] = {}
    parents = dict(stored)
    for node in nodes:
        if node.code in first_line:
            report.add(node.line, "code", f"{node.code!r} is also on line {first_line[node.code]}")
            continue
        first_line[node.code] = node.line
        parents[node.code] = node.parent_code
    for node in nodes:
        if node.parent_code is None or first_line[node.code] != node.line:
            continue
        if node.parent_code == node.code:
            report.add(node.line, "parent_code", f"{node.code!r} cannot be its own parent")
        elif node.parent_code not in parents:
            report.add(node.line, "parent_code", f"unknown {what} {node.parent_code!r}")
    for cycle in _cycles(parents, first_line):
        if len(cycle) == 1:
            continue  # reported above as its own parent
        path = " → ".join([*cycle, cycle[0]])
        for code in cycle:
            if code in first_line:
                report.add(
                    first_line[code], "parent_code", f"{parents[code]!r} makes a cycle: {path}"
                )


def _cycles(parents: Mapping[str, str | None], starts: Mapping[str, int]) -> list[list[str]]:
    """Every cycle through a code of the file (the stored tree has none of its own)."""
    done: set[str] = set()
    cycles = []
    for start in starts:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parents.get(node)
        if node is not None and node in on_path:
            cycles.append(path[path.index(node) :])
        done.update(path)
    return cycles


async def stored_tree(
    session: AsyncSession, model: Model, *columns: str
) -> dict[str, tuple[int, str | None, tuple[Any, ...]]]:
    """code -> (id, parent code, values of `columns`) for every stored row (a few thousand)."""
    table = table_of(model)
    names = ("id", "code", "parent_id", *columns)
    rows = (await session.execute(select(*(table.c[name] for name in names)))).all()
    code_of = {row[0]: row[1] for row in rows}
    return {row[1]: (row[0], code_of.get(row[2]), tuple(row[3:])) for row in rows}
