"""Portions ordered per canteen, slot and item, and per delivery building, by aggregate SQL.

The canteen staff's `订单汇总`/`orders`, the push at each slot's deadline and the dashboard
read the same numbers from here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from campus.meals.rules import SLOTS
from storage.models import Place
from storage.models_meals import MealItem, MealOrder

PLACED = "placed"


@dataclass(frozen=True, slots=True)
class BuildingCount:
    """Portions of one item delivered to one building."""

    building_id: int
    code: str
    name: str
    portions: int


@dataclass(frozen=True, slots=True)
class SlotCount:
    """One item of one canteen's slot: portions ordered (placed orders), of its capacity.

    `delivered` are the portions going to buildings (`buildings`, largest first) and to
    persons under observation without a home place (`delivered` minus the buildings' sum);
    the rest (`pickup`) is collected at the canteen.
    """

    canteen_id: int
    canteen_code: str
    canteen_name: str
    day: date
    slot: str
    item_id: int
    item_code: str
    item_name: str
    price_cents: int
    capacity: int
    ordered: int
    delivered: int
    orders: int
    buildings: tuple[BuildingCount, ...] = ()

    @property
    def pickup(self) -> int:
        return self.ordered - self.delivered

    @property
    def left(self) -> int:
        return max(0, self.capacity - self.ordered)


def _slot_rank(slot: str) -> int:
    return SLOTS.index(slot) if slot in SLOTS else len(SLOTS)


async def slot_counts(
    session: AsyncSession, *, day: date, canteen_ids: Collection[int] | None = None
) -> list[SlotCount]:
    """Every menu item of `day` (of these canteens; None: all), ordered by canteen, slot, item.

    Items nobody ordered are included with zero counts.
    """
    placed = and_(MealOrder.item_id == MealItem.id, MealOrder.state == PLACED)
    portions = func.coalesce(func.sum(MealOrder.quantity), 0)
    delivered = func.coalesce(
        func.sum(case((MealOrder.delivery.is_(True), MealOrder.quantity), else_=0)), 0
    )
    stmt = (
        select(
            MealItem.id,
            MealItem.canteen_id,
            Place.code,
            Place.name,
            MealItem.slot,
            MealItem.item_code,
            MealItem.name,
            MealItem.price_cents,
            MealItem.capacity,
            portions,
            delivered,
            func.count(MealOrder.id),
        )
        .join(Place, Place.id == MealItem.canteen_id)
        .outerjoin(MealOrder, placed)
        .where(MealItem.day == day)
        .group_by(
            MealItem.id,
            MealItem.canteen_id,
            Place.code,
            Place.name,
            MealItem.slot,
            MealItem.item_code,
            MealItem.name,
            MealItem.price_cents,
            MealItem.capacity,
        )
    )
    by_building = (
        select(MealOrder.item_id, Place.id, Place.code, Place.name, func.sum(MealOrder.quantity))
        .join(MealItem, MealItem.id == MealOrder.item_id)
        .join(Place, Place.id == MealOrder.building_id)
        .where(MealItem.day == day, MealOrder.state == PLACED, MealOrder.delivery.is_(True))
        .group_by(MealOrder.item_id, Place.id, Place.code, Place.name)
    )
    if canteen_ids is not None:
        ids = sorted(set(canteen_ids))
        stmt = stmt.where(MealItem.canteen_id.in_(ids))
        by_building = by_building.where(MealItem.canteen_id.in_(ids))
    buildings: dict[int, list[BuildingCount]] = defaultdict(list)
    for item_id, place_id, code, name, n in await session.execute(by_building):
        buildings[item_id].append(BuildingCount(place_id, code, name, int(n)))
    rows = [
        SlotCount(
            canteen_id=canteen_id,
            canteen_code=canteen_code,
            canteen_name=canteen_name,
            day=day,
            slot=slot,
            item_id=item_id,
            item_code=item_code,
            item_name=item_name,
            price_cents=price,
            capacity=capacity,
            ordered=int(ordered),
            delivered=int(deliv),
            orders=int(orders),
            buildings=tuple(
                sorted(buildings.get(item_id, ()), key=lambda b: (-b.portions, b.code))
            ),
        )
        for (
            item_id,
            canteen_id,
            canteen_code,
            canteen_name,
            slot,
            item_code,
            item_name,
            price,
            capacity,
            ordered,
            deliv,
            orders,
        ) in await session.execute(stmt)
    ]
    rows.sort(key=lambda r: (r.canteen_code, _slot_rank(r.slot), r.item_code))
    return rows
