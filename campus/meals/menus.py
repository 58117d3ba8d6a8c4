"""Import of menus.csv: `canteen_code,date,slot,item_code,name,price_cents,capacity`.

An item is keyed by (canteen, date, slot, item_code); importing the file again updates name,
price and portions. Portions already ordered stay ordered: a capacity below them is refused.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from campus.meals.rules import SLOTS
from campus.registry import fields
from campus.registry.bulk import Advance, chunks, table_of
from campus.registry.csvfile import Rows
from campus.registry.report import ImportReport
from storage.models import Place
from storage.models_meals import MealItem

COLUMNS = ("canteen_code", "date", "slot", "item_code", "name", "price_cents", "capacity")
MAX_PRICE_CENTS = 10_000_000  # ¥100,000: anything above is a typo
MAX_CAPACITY = 100_000
# ASCII digits only: `\d` alone would take "１５００" and "١٠٠" (int() reads them) too.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_WHOLE = re.compile(r"\d{1,9}", re.ASCII)

Key = tuple[int, date, str, str]


@dataclass(slots=True)
class MenuRow:
    line: int
    canteen_id: int
    day: date
    slot: str
    item_code: str
    name: str
    price_cents: int
    capacity: int

    @property
    def key(self) -> Key:
        return (self.canteen_id, self.day, self.slot, self.item_code)


@dataclass
class MenuPlan:
    creates: list[MenuRow] = field(default_factory=list)
    updates: list[tuple[int, MenuRow]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates)

    async def write(self, session: AsyncSession, now: datetime, advance: Advance) -> None:
        table = table_of(MealItem)
        for part in chunks(self.creates):
            await session.execute(
                insert(table),
                [
                    {**_values(row), "ordered": 0, "created_at": now, "updated_at": now}
                    for row in part
                ],
            )
            advance(len(part))
        by_id = update(table).where(table.c.id == bindparam("_id"))
        for changed in chunks(self.updates):
            await session.execute(
                by_id,
                [
                    {
                        "_id": item_id,
                        "name": row.name,
                        "price_cents": row.price_cents,
                        "capacity": row.capacity,
                        "updated_at": now,
                    }
                    for item_id, row in changed
                ],
            )
            advance(len(changed))


def _values(row: MenuRow) -> dict[str, Any]:
    return {
        "canteen_id": row.canteen_id,
        "day": row.day,
        "slot": row.slot,
        "item_code": row.item_code,
        "name": row.name,
        "price_cents": row.price_cents,
        "capacity": row.capacity,
    }


def iso_date(value: str) -> date:
    if not value:
        raise fields.Invalid("is empty")
    try:
        if not _ISO_DATE.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise fields.Invalid(f"{value[:40]!r} is not a date YYYY-MM-DD") from None


def slot(value: str) -> str:
    if value not in SLOTS:
        raise fields.Invalid(f"unknown slot {value[:40]!r} (one of {', '.join(SLOTS)})")
    return SLOTS[SLOTS.index(value)]


def _whole(limit: int, what: str) -> Any:
    def check(value: str) -> int:
        if not value:
            raise fields.Invalid("is empty")
        if not _WHOLE.fullmatch(value):
            raise fields.Invalid(f"{value[:40]!r} is not a whole number of {what}")
        number = int(value)
        if number > limit:
            raise fields.Invalid(f"{number} is more than {limit} {what}")
        return number

    return check


price_cents = _whole(MAX_PRICE_CENTS, "cents")
capacity = _whole(MAX_CAPACITY, "portions")


async def prepare_menus(session: AsyncSession, rows: Rows, report: ImportReport) -> MenuPlan:
    places = {
        code: (place_id, kind)
        for place_id, code, kind in await session.execute(select(Place.id, Place.code, Place.kind))
    }
    parsed: list[MenuRow] = []
    seen: dict[Key, int] = {}
    for line, row in report.rows_of(rows):
        check = fields.RowCheck(report, line, row)
        canteen_code = check("canteen_code", fields.code)
        canteen_id = None
        if canteen_code is not None:
            place = places.get(canteen_code)
            if place is None:
                check.bad("canteen_code", f"unknown place {canteen_code!r}")
            elif place[1] != "canteen":
                check.bad("canteen_code", f"{canteen_code!r} is a {place[1]}, not a canteen")
            else:
                canteen_id = place[0]
        day = check("date", iso_date)
        meal_slot = check("slot", slot)
        item_code = check("item_code", fields.code)
        name = check("name", fields.name)
        price = check("price_cents", price_cents)
        portions = check("capacity", capacity)
        if not check.ok:
            continue
        assert canteen_id is not None and day is not None and meal_slot is not None
        assert item_code is not None and name is not None
        assert price is not None and portions is not None
        menu_row = MenuRow(line, canteen_id, day, meal_slot, item_code, name, price, portions)
        first = seen.setdefault(menu_row.key, line)
        if first != line:
            report.add(
                line,
                None,
                f"item {item_code!r} of {canteen_code} {day} {meal_slot} is also on line {first}",
            )
            continue
        parsed.append(menu_row)

    plan = MenuPlan()
    if not report.ok or not parsed:
        return plan
    stored: dict[Key, tuple[int, str, int, int, int]] = {}
    days = sorted({r.day for r in parsed})
    for part in chunks(days):
        stmt = select(
            MealItem.id,
            MealItem.canteen_id,
            MealItem.day,
            MealItem.slot,
            MealItem.item_code,
            MealItem.name,
            MealItem.price_cents,
            MealItem.capacity,
            MealItem.ordered,
        ).where(MealItem.day.in_(part))
        for item_id, cid, d, s, code, name_, price_, cap, ordered in await session.execute(stmt):
            stored[(cid, d, s, code)] = (item_id, name_, price_, cap, ordered)
    for menu_row in parsed:
        known = stored.get(menu_row.key)
        if known is None:
            plan.creates.append(menu_row)
            continue
        item_id, name_, price_, cap, ordered = known
        if menu_row.capacity < ordered:
            report.add(
                menu_row.line,
                "capacity",
                f"{menu_row.capacity} is below the {ordered} portions already ordered",
            )
        elif (name_, price_, cap) == (menu_row.name, menu_row.price_cents, menu_row.capacity):
            report.unchanged += 1
        else:
            plan.updates.append((item_id, menu_row))
    report.created, report.updated = len(plan.creates), len(plan.updates)
    return plan


async def menu_rows(session: AsyncSession) -> AsyncIterator[list[str]]:
    """The stored menus in the import format (`healthbot export menus`)."""
    stmt = (
        select(
            Place.code,
            MealItem.day,
            MealItem.slot,
            MealItem.item_code,
            MealItem.name,
            MealItem.price_cents,
            MealItem.capacity,
        )
        .join(Place, Place.id == MealItem.canteen_id)
        .order_by(
            MealItem.day,
            Place.code,
            case({slot: i for i, slot in enumerate(SLOTS)}, value=MealItem.slot, else_=len(SLOTS)),
            MealItem.item_code,
        )
    )
    for code, day, meal_slot, item_code, name, price, portions in await session.execute(stmt):
        yield [code, day.isoformat(), meal_slot, item_code, name, str(price), str(portions)]
