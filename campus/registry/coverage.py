"""Registry coverage, the figures a university reports: houses and people registered and bound."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from storage.models import Person, Place, Unit, WeChatAccount

ACTIVE = ("active", "pending")


@dataclass(frozen=True, slots=True)
class GridCoverage:
    code: str
    name: str
    houses: int
    houses_registered: int  # houses with at least one registered resident
    residents: int
    residents_bound: int


@dataclass(frozen=True, slots=True)
class UnitCoverage:
    code: str
    name: str
    persons: int
    bound: int


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "—"


async def grid_coverage(sessions: async_sessionmaker[AsyncSession]) -> list[GridCoverage]:
    """Per grid: its houses, how many have a registered resident, residents and bound ones."""
    grid, house = aliased(Place), aliased(Place)
    residents = (
        select(
            Person.home_place_id.label("house_id"),
            func.count(Person.id).label("residents"),
            func.count(WeChatAccount.openid).label("bound"),
        )
        .outerjoin(WeChatAccount, WeChatAccount.person_id == Person.id)
        .where(Person.state.in_(ACTIVE), Person.home_place_id.is_not(None))
        .group_by(Person.home_place_id)
        .subquery()
    )
    stmt = (
        select(
            grid.code,
            grid.name,
            func.count(house.id),
            func.count(residents.c.house_id),
            func.coalesce(func.sum(residents.c.residents), 0),
            func.coalesce(func.sum(residents.c.bound), 0),
        )
        .outerjoin(house, and_(house.parent_id == grid.id, house.kind == "house"))
        .outerjoin(residents, residents.c.house_id == house.id)
        .where(grid.kind == "grid")
        .group_by(grid.id, grid.code, grid.name)
        .order_by(grid.code)
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [GridCoverage(r[0], r[1], int(r[2]), int(r[3]), int(r[4]), int(r[5])) for r in rows]


async def unit_coverage(sessions: async_sessionmaker[AsyncSession]) -> list[UnitCoverage]:
    """Per unit (its own members): persons registered and bound to WeChat."""
    stmt = (
        select(
            Unit.code,
            Unit.name,
            func.count(Person.id),
            func.count(WeChatAccount.openid),
        )
        .outerjoin(Person, and_(Person.unit_id == Unit.id, Person.state.in_(ACTIVE)))
        .outerjoin(WeChatAccount, WeChatAccount.person_id == Person.id)
        .group_by(Unit.id, Unit.code, Unit.name)
        .order_by(Unit.code)
    )
    async with sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [UnitCoverage(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


def render(grids: list[GridCoverage], units: list[UnitCoverage]) -> str:
    lines = ["Grids: houses registered, residents registered and bound to WeChat"]
    for g in grids:
        lines.append(
            f"  {g.code:<12} {g.name[:30]:<30} houses {g.houses_registered}/{g.houses}"
            f" ({percent(g.houses_registered, g.houses)}), residents {g.residents},"
            f" bound {g.residents_bound} ({percent(g.residents_bound, g.residents)})"
        )
    total_houses = sum(g.houses for g in grids)
    registered = sum(g.houses_registered for g in grids)
    lines.append(
        f"  all grids: {registered}/{total_houses} houses registered"
        f" ({percent(registered, total_houses)})"
    )
    lines.append("Units: persons registered and bound to WeChat")
    for u in units:
        lines.append(
            f"  {u.code:<12} {u.name[:30]:<30} persons {u.persons},"
            f" bound {u.bound} ({percent(u.bound, u.persons)})"
        )
    persons = sum(u.persons for u in units)
    bound = sum(u.bound for u in units)
    lines.append(f"  all units: {persons} persons, {bound} bound ({percent(bound, persons)})")
    return "\n".join(lines)
