"""Ordering meals: the open slots, their menus, placing and cancelling orders.

Portions never oversell: an order moves its item's counter by a conditional UPDATE
(`ordered + q <= capacity`) in the same transaction as the order row, so however many people
order the last portions at once, the database lets exactly as many through as there are.
The per-person limit is checked under a lock on the person's row (PostgreSQL) or the
process's SQLite write lock (campus.health.store.write_lock: SQLite runs its SELECTs outside
the transaction, so without it six orders of one person at once all passed a limit of two).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from campus.health.store import write_lock
from campus.meals.eligibility import Eligibility, Refusal, building_of, decide
from campus.meals.rules import SLOTS, MealRules
from campus.meals.summary import PLACED, SlotCount, slot_counts
from storage.models import Person, Place
from storage.models_meals import MealItem, MealOrder

CANCELLED = "cancelled"


class Outcome(StrEnum):
    PLACED = "placed"
    NOT_ACTIVE = "not_active"  # no active campus record
    NOT_BACK = "not_back"  # not back on campus (and not staff)
    UNKNOWN_ITEM = "unknown_item"
    CLOSED = "closed"  # the slot's deadline has passed
    NOT_YET = "not_yet"  # beyond the days offered (rules file meals.days_ahead)
    BAD_QUANTITY = "bad_quantity"
    LIMIT = "limit"  # more than the per-person limit for the slot
    SOLD_OUT = "sold_out"  # fewer portions left than asked for


class Cancel(StrEnum):
    CANCELLED = "cancelled"
    NOT_FOUND = "not_found"
    ALREADY = "already"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class OpenSlot:
    day: date
    slot: str
    deadline: datetime
    left: int  # portions left over all items


@dataclass(frozen=True, slots=True)
class MenuItem:
    id: int
    canteen_code: str
    canteen_name: str
    day: date
    slot: str
    item_code: str
    name: str
    price_cents: int
    capacity: int
    ordered: int

    @property
    def left(self) -> int:
        return max(0, self.capacity - self.ordered)


@dataclass(frozen=True, slots=True)
class OrderView:
    id: int
    day: date
    slot: str
    canteen_name: str
    item_name: str
    quantity: int
    price_cents: int
    delivery: bool
    building_name: str | None
    deadline: datetime
    open: bool

    @property
    def total_cents(self) -> int:
        return self.quantity * self.price_cents


@dataclass(frozen=True, slots=True)
class Placed:
    outcome: Outcome
    order: OrderView | None = None
    left: int = 0  # portions of the item left (SOLD_OUT) or the person's allowance (LIMIT)


_ITEM_COLUMNS = (
    MealItem.id,
    Place.code,
    Place.name,
    MealItem.day,
    MealItem.slot,
    MealItem.item_code,
    MealItem.name,
    MealItem.price_cents,
    MealItem.capacity,
    MealItem.ordered,
)


class MealService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: MealRules,
        clock: Clock,
        tz: ZoneInfo,
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self._clock = clock
        self.tz = tz

    def now(self) -> datetime:
        return utcnow(self._clock)

    def today(self) -> date:
        return self.now().astimezone(self.tz).date()

    def deadline(self, day: date, slot: str) -> datetime:
        return self.rules.deadline(day, slot, self.tz)

    def offered(self, day: date) -> bool:
        """Whether the day is within the days menus are offered for (today and days_ahead)."""
        return day <= self.today() + timedelta(days=self.rules.days_ahead - 1)

    def is_open(self, day: date, slot: str) -> bool:
        return slot in SLOTS and self.rules.is_open(day, slot, self.now(), self.tz)

    async def eligibility(self, person_id: int, day: date | None = None) -> Eligibility:
        async with self._sessions() as session:
            person = await session.get(Person, person_id)
        if person is None:
            return Eligibility(Refusal.NOT_ACTIVE)
        return decide(person, self.rules, day or self.today(), self.tz)

    async def open_slots(self) -> list[OpenSlot]:
        """The (day, slot) pairs still taking orders that have a menu, soonest first."""
        today = self.today()
        last = today + timedelta(days=self.rules.days_ahead - 1)
        stmt = (
            select(MealItem.day, MealItem.slot, func.sum(MealItem.capacity - MealItem.ordered))
            .where(MealItem.day >= today, MealItem.day <= last)
            .group_by(MealItem.day, MealItem.slot)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        slots = [
            OpenSlot(day, slot, self.deadline(day, slot), int(left))
            for day, slot, left in rows
            if slot in SLOTS and self.is_open(day, slot)
        ]
        slots.sort(key=lambda s: (s.day, SLOTS.index(s.slot)))
        return slots

    async def menu(self, day: date, slot: str) -> list[MenuItem]:
        """The items of an open slot (empty once it has closed), by canteen and item code."""
        if not self.is_open(day, slot) or not self.offered(day):
            return []
        stmt = (
            select(*_ITEM_COLUMNS)
            .join(Place, Place.id == MealItem.canteen_id)
            .where(MealItem.day == day, MealItem.slot == slot)
            .order_by(Place.code, MealItem.item_code)
        )
        async with self._sessions() as session:
            return [_menu_item(row) for row in await session.execute(stmt)]

    async def item(self, item_id: int) -> MenuItem | None:
        stmt = (
            select(*_ITEM_COLUMNS)
            .join(Place, Place.id == MealItem.canteen_id)
            .where(MealItem.id == item_id)
        )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        return _menu_item(row) if row is not None else None

    async def allowance(self, person_id: int, day: date, slot: str) -> int:
        """How many more portions the person may order for this slot."""
        async with self._sessions() as session:
            taken = await _taken(session, person_id, day, slot)
        return max(0, self.rules.per_person_limit - taken)

    async def place(self, person_id: int, item_id: int, quantity: int) -> Placed:
        async with write_lock(self._sessions):
            return await self._place(person_id, item_id, quantity)

    async def _place(self, person_id: int, item_id: int, quantity: int) -> Placed:
        now = self.now()
        async with self._sessions.begin() as session:
            # FOR NO KEY UPDATE: orders of this person wait here, while rows that merely
            # reference the person (check-ins, access records) are not held up.
            person = (
                await session.execute(
                    select(Person).where(Person.id == person_id).with_for_update(key_share=True)
                )
            ).scalar_one_or_none()
            if person is None:
                return Placed(Outcome.NOT_ACTIVE)
            found = (
                await session.execute(
                    select(MealItem, Place.name)
                    .join(Place, Place.id == MealItem.canteen_id)
                    .where(MealItem.id == item_id)
                )
            ).first()
            if found is None:
                return Placed(Outcome.UNKNOWN_ITEM)
            item, canteen_name = found
            day, slot = item.day, item.slot
            if not self.rules.is_open(day, slot, now, self.tz):
                return Placed(Outcome.CLOSED)
            if not self.offered(day):
                return Placed(Outcome.NOT_YET)
            eligibility = decide(person, self.rules, day, self.tz)
            if eligibility.refusal is Refusal.NOT_ACTIVE:
                return Placed(Outcome.NOT_ACTIVE)
            if eligibility.refusal is Refusal.NOT_BACK:
                return Placed(Outcome.NOT_BACK)
            if not 1 <= quantity <= self.rules.per_person_limit:
                return Placed(Outcome.BAD_QUANTITY)
            allowance = self.rules.per_person_limit - await _taken(session, person_id, day, slot)
            if quantity > allowance:
                return Placed(Outcome.LIMIT, left=max(0, allowance))
            building = (
                await building_of(session, person.home_place_id) if eligibility.delivery else None
            )
            # The item's row stays locked from here to the commit: keep that short.
            moved = await session.execute(
                update(MealItem)
                .where(MealItem.id == item_id, MealItem.ordered + quantity <= MealItem.capacity)
                .values(ordered=MealItem.ordered + quantity)
                .execution_options(synchronize_session=False)
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                left = await session.scalar(
                    select(MealItem.capacity - MealItem.ordered).where(MealItem.id == item_id)
                )
                return Placed(Outcome.SOLD_OUT, left=max(0, int(left or 0)))
            order = MealOrder(
                person_id=person_id,
                item_id=item_id,
                quantity=quantity,
                price_cents=item.price_cents,
                delivery=eligibility.delivery,
                building_id=building.id if building is not None else None,
                state=PLACED,
                created_at=now,
            )
            session.add(order)
            await session.flush()
            view = OrderView(
                id=order.id,
                day=day,
                slot=slot,
                canteen_name=canteen_name,
                item_name=item.name,
                quantity=quantity,
                price_cents=item.price_cents,
                delivery=eligibility.delivery,
                building_name=building.name if building is not None else None,
                deadline=self.deadline(day, slot),
                open=True,
            )
        return Placed(Outcome.PLACED, view)

    async def orders(self, person_id: int) -> list[OrderView]:
        """The person's placed orders from today on, soonest first."""
        building = Place.__table__.alias("building")
        canteen = Place.__table__.alias("canteen")
        stmt = (
            select(
                MealOrder.id,
                MealItem.day,
                MealItem.slot,
                canteen.c.name,
                MealItem.name,
                MealOrder.quantity,
                MealOrder.price_cents,
                MealOrder.delivery,
                building.c.name,
            )
            .join(MealItem, MealItem.id == MealOrder.item_id)
            .join(canteen, canteen.c.id == MealItem.canteen_id)
            .outerjoin(building, building.c.id == MealOrder.building_id)
            .where(
                MealOrder.person_id == person_id,
                MealOrder.state == PLACED,
                MealItem.day >= self.today(),
            )
            .order_by(MealItem.day, MealOrder.id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        views = [
            OrderView(
                id=oid,
                day=day,
                slot=slot,
                canteen_name=canteen_name,
                item_name=item_name,
                quantity=quantity,
                price_cents=price,
                delivery=delivery,
                building_name=building_name,
                deadline=self.deadline(day, slot) if slot in SLOTS else self.now(),
                open=self.is_open(day, slot),
            )
            for (
                oid,
                day,
                slot,
                canteen_name,
                item_name,
                quantity,
                price,
                delivery,
                building_name,
            ) in rows
        ]
        views.sort(key=lambda o: (o.day, SLOTS.index(o.slot) if o.slot in SLOTS else 9, o.id))
        return views

    async def cancel(self, person_id: int, order_id: int) -> Cancel:
        """Cancel one's own order before its slot's deadline; the portions go back."""
        async with write_lock(self._sessions):
            return await self._cancel(person_id, order_id)

    async def _cancel(self, person_id: int, order_id: int) -> Cancel:
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    select(
                        MealOrder.state,
                        MealOrder.quantity,
                        MealItem.id,
                        MealItem.day,
                        MealItem.slot,
                    )
                    .join(MealItem, MealItem.id == MealOrder.item_id)
                    .where(MealOrder.id == order_id, MealOrder.person_id == person_id)
                )
            ).first()
            if row is None:
                return Cancel.NOT_FOUND
            state, quantity, item_id, day, slot = row
            if state != PLACED:
                return Cancel.ALREADY
            if not self.is_open(day, slot):
                return Cancel.CLOSED
            # Conditional on the state, so a double tap (or two devices) returns the portions once.
            changed = await session.execute(
                update(MealOrder)
                .where(MealOrder.id == order_id, MealOrder.state == PLACED)
                .values(state=CANCELLED, cancelled_at=self.now())
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                return Cancel.ALREADY
            await session.execute(
                update(MealItem)
                .where(MealItem.id == item_id)
                .values(ordered=MealItem.ordered - quantity)
                .execution_options(synchronize_session=False)
            )
        return Cancel.CANCELLED

    async def counts(
        self, day: date, canteen_ids: Collection[int] | None = None
    ) -> list[SlotCount]:
        async with self._sessions() as session:
            return await slot_counts(session, day=day, canteen_ids=canteen_ids)


def _menu_item(row: Sequence[Any]) -> MenuItem:
    item_id, code, name, day, slot, item_code, item_name, price, capacity, ordered = row
    return MenuItem(item_id, code, name, day, slot, item_code, item_name, price, capacity, ordered)


async def _taken(session: AsyncSession, person_id: int, day: date, slot: str) -> int:
    """Portions the person has ordered (and not cancelled) for this slot, in any canteen."""
    total = await session.scalar(
        select(func.coalesce(func.sum(MealOrder.quantity), 0))
        .join(MealItem, MealItem.id == MealOrder.item_id)
        .where(
            MealOrder.person_id == person_id,
            MealOrder.state == PLACED,
            MealItem.day == day,
            MealItem.slot == slot,
        )
    )
    return int(total or 0)
