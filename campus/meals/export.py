"""`healthbot export orders --date D [--canteen C]`: the day's placed orders as CSV.

One row per order, for the canteen to cook, pack and hand over: the person's number and a
masked name identify the order at pick-up or at the building's door.
"""

from __future__ import annotations

import io
import logging
from datetime import date
from typing import TextIO
from zoneinfo import ZoneInfo

import click
from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.settings import Settings
from campus import audit
from campus.identity import mask_name
from campus.meals.rules import SLOTS
from campus.meals.summary import PLACED
from campus.registry.csvfile import row_writer
from campus.registry.database import DatabaseNotReady, open_database
from storage.models import Person, Place
from storage.models_meals import MealItem, MealOrder

log = logging.getLogger(__name__)

COLUMNS = (
    "order_id",
    "date",
    "slot",
    "canteen_code",
    "item_code",
    "item_name",
    "quantity",
    "price_cents",
    "total_cents",
    "person_no",
    "name",
    "delivery",
    "building_code",
    "ordered_at",
)
_BATCH = 2000
UTC_ZONE = ZoneInfo("UTC")
# Slots in meal order (breakfast, lunch, dinner), not alphabetical.
_SLOT_ORDER = case({slot: i for i, slot in enumerate(SLOTS)}, value=MealItem.slot, else_=len(SLOTS))


class UnknownCanteen(LookupError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no canteen with code {code!r}")


async def export_orders(
    sessions: async_sessionmaker[AsyncSession],
    out: TextIO,
    day: date,
    canteen_code: str | None = None,
    tz: ZoneInfo = UTC_ZONE,
) -> int:
    """Write the header and the day's placed orders; returns the number of rows.

    `ordered_at` is ISO 8601 with the offset of `tz` (the CLI passes the campus time zone).
    """
    canteen = aliased(Place)
    building = aliased(Place)
    async with sessions() as session:
        canteen_id = None
        if canteen_code is not None:
            canteen_id = await session.scalar(
                select(Place.id).where(Place.code == canteen_code, Place.kind == "canteen")
            )
            if canteen_id is None:
                raise UnknownCanteen(canteen_code)
    async with sessions.begin() as session:  # recorded even if writing fails half-way
        what = f"export orders {day}" + (f" canteen {canteen_code}" if canteen_code else "")
        audit.record(session, "cli", "export", None, what)
    stmt = (
        select(
            MealOrder.id,
            MealItem.slot,
            canteen.code,
            MealItem.item_code,
            MealItem.name,
            MealOrder.quantity,
            MealOrder.price_cents,
            Person.person_no,
            Person.name,
            MealOrder.delivery,
            building.code,
            MealOrder.created_at,
        )
        .join(MealItem, MealItem.id == MealOrder.item_id)
        .join(canteen, canteen.id == MealItem.canteen_id)
        .join(Person, Person.id == MealOrder.person_id)
        .outerjoin(building, building.id == MealOrder.building_id)
        .where(MealItem.day == day, MealOrder.state == PLACED)
        .order_by(canteen.code, _SLOT_ORDER, MealItem.item_code, MealOrder.id)
        .execution_options(yield_per=_BATCH)
    )
    if canteen_id is not None:
        stmt = stmt.where(MealItem.canteen_id == canteen_id)
    write = row_writer(out, COLUMNS)
    count = 0
    async with sessions() as session:
        result = await session.stream(stmt)
        async for (
            oid,
            slot,
            ccode,
            icode,
            iname,
            qty,
            price,
            pno,
            name,
            delivery,
            bcode,
            at,
        ) in result:
            write(
                [
                    str(oid),
                    day.isoformat(),
                    slot,
                    ccode,
                    icode,
                    iname,
                    str(qty),
                    str(price),
                    str(qty * price),
                    pno,
                    mask_name(name),
                    "delivery" if delivery else "pickup",
                    bcode or "",
                    at.astimezone(tz).isoformat(timespec="seconds"),
                ]
            )
            count += 1
    log.info("export orders %s: %d rows", day, count)
    return count


async def run_export_orders(settings: Settings, day: date, canteen_code: str | None) -> str:
    """The CLI's entry: the CSV text (kept whole, so a failed export writes no partial file)."""
    out = io.StringIO()
    try:
        async with open_database(settings) as sessions:
            await export_orders(sessions, out, day, canteen_code, settings.tz)
    except (DatabaseNotReady, UnknownCanteen) as exc:
        raise click.ClickException(str(exc)) from None
    return out.getvalue()
