"""Meal ordering (issue 9): deadlines, eligibility, limits, cancellation, no overselling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from campus.meals.deadlines import due_slots
from campus.meals.eligibility import Refusal
from campus.meals.ordering import Cancel, Outcome
from campus.meals.rules import MealRules
from storage.models import Person
from storage.models_meals import MealItem, MealOrder
from tests.campus.meals_world import (
    TODAY,
    TOMORROW,
    TZ,
    World,
    build_world,
    sqlite_url,
)


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    url = (
        sqlite_url(tmp_path)
        if request.param == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    w = await build_world(url)
    await w.add_item("B1", "CANTEEN-1", TOMORROW, "breakfast", 500, 10)
    await w.add_item("L1", "CANTEEN-1", TOMORROW, "lunch", 1500, 5)
    await w.add_item("L2", "CANTEEN-1", TOMORROW, "lunch", 1200, 3)
    await w.add_item("C2:L1", "CANTEEN-2", TOMORROW, "lunch", 1300, 4)
    await w.add_item("today:L1", "CANTEEN-1", TODAY, "lunch", 1500, 10)
    await w.add_item("today:D1", "CANTEEN-1", TODAY, "dinner", 1500, 10)
    try:
        yield w
    finally:
        await w.engine.dispose()


def test_deadlines_are_in_campus_time() -> None:
    rules = MealRules()
    # Breakfast closes at 20:00 the day before; lunch 09:30 and dinner 15:00 the same day.
    assert rules.deadline(TOMORROW, "breakfast", TZ) == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert rules.deadline(TODAY, "lunch", TZ) == datetime(2026, 11, 26, 1, 30, tzinfo=UTC)
    assert rules.deadline(TODAY, "dinner", TZ) == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


async def test_open_slots_follow_the_clock(world: World) -> None:
    slots = [(s.day, s.slot) for s in await world.meals.open_slots()]
    assert slots == [
        (TODAY, "lunch"),
        (TODAY, "dinner"),
        (TOMORROW, "breakfast"),
        (TOMORROW, "lunch"),
    ]
    world.at(TODAY, 9, 30)  # lunch has closed at 09:30 sharp
    assert (TODAY, "lunch") not in [(s.day, s.slot) for s in await world.meals.open_slots()]
    assert await world.meals.menu(TODAY, "lunch") == []
    world.at(TODAY, 19, 59)
    slots = [(s.day, s.slot) for s in await world.meals.open_slots()]
    assert slots == [(TOMORROW, "breakfast"), (TOMORROW, "lunch")]
    world.at(TODAY, 20, 0)
    assert [(s.day, s.slot) for s in await world.meals.open_slots()] == [(TOMORROW, "lunch")]
    left = {s.slot: s.left for s in await world.meals.open_slots()}
    assert left == {"lunch": 5 + 3 + 4}


async def test_who_may_order_and_who_gets_delivery(world: World) -> None:
    p = world.persons
    assert (await world.meals.eligibility(p["S3"])).refusal is Refusal.NOT_BACK
    assert (await world.meals.eligibility(p["S4"])).refusal is Refusal.NOT_ACTIVE
    assert (await world.meals.eligibility(p["S1"])).delivery  # 2 days after arrival
    assert not (await world.meals.eligibility(p["S2"])).delivery  # 30 days after
    assert not (await world.meals.eligibility(p["T1"])).delivery  # staff: always may order
    assert (await world.meals.eligibility(p["T2"])).delivery  # yellow: told to stay in
    # The 14 days count to the meal's day: S1 arrived 2 days ago.
    assert (await world.meals.eligibility(p["S1"], TODAY + timedelta(days=11))).delivery
    assert not (await world.meals.eligibility(p["S1"], TODAY + timedelta(days=12))).delivery

    refused = await world.meals.place(p["S3"], world.items["L1"], 1)
    assert refused.outcome is Outcome.NOT_BACK
    assert (await world.meals.place(p["S4"], world.items["L1"], 1)).outcome is Outcome.NOT_ACTIVE

    placed = await world.meals.place(p["S1"], world.items["L1"], 1)
    assert placed.outcome is Outcome.PLACED and placed.order is not None
    assert placed.order.delivery and placed.order.building_name == "Dorm 1"
    placed = await world.meals.place(p["T2"], world.items["L1"], 1)
    assert placed.order is not None and placed.order.building_name == "House 1"
    placed = await world.meals.place(p["S5"], world.items["L1"], 1)  # no home place on record
    assert placed.order is not None and placed.order.delivery
    assert placed.order.building_name is None
    placed = await world.meals.place(p["S2"], world.items["L1"], 1)
    assert placed.order is not None and not placed.order.delivery
    assert placed.order.canteen_name == "Canteen 1"
    assert await world.ordered("L1") == 4


async def test_per_person_limit_over_all_canteens(world: World) -> None:
    t1 = world.persons["T1"]
    assert (await world.meals.place(t1, world.items["L1"], 3)).outcome is Outcome.BAD_QUANTITY
    assert (await world.meals.place(t1, world.items["L1"], 0)).outcome is Outcome.BAD_QUANTITY
    assert (await world.meals.place(t1, world.items["L1"], 1)).outcome is Outcome.PLACED
    assert await world.meals.allowance(t1, TOMORROW, "lunch") == 1
    first = await world.meals.place(t1, world.items["C2:L1"], 1)
    assert first.outcome is Outcome.PLACED and first.order is not None
    refused = await world.meals.place(t1, world.items["L2"], 1)
    assert refused.outcome is Outcome.LIMIT and refused.left == 0
    # Another slot has its own limit.
    assert (await world.meals.place(t1, world.items["B1"], 2)).outcome is Outcome.PLACED
    # A cancelled order no longer counts.
    assert await world.meals.cancel(t1, first.order.id) is Cancel.CANCELLED
    assert (await world.meals.place(t1, world.items["L2"], 1)).outcome is Outcome.PLACED
    assert await world.ordered("C2:L1") == 0


async def test_cancel_before_the_deadline_only(world: World) -> None:
    s1, s2 = world.persons["S1"], world.persons["S2"]
    placed = await world.meals.place(s1, world.items["today:L1"], 2)
    assert placed.order is not None
    order_id = placed.order.id
    assert await world.ordered("today:L1") == 2
    assert await world.meals.cancel(s2, order_id) is Cancel.NOT_FOUND  # not theirs
    assert await world.meals.cancel(s1, order_id + 1000) is Cancel.NOT_FOUND
    assert await world.meals.cancel(s1, order_id) is Cancel.CANCELLED
    assert await world.ordered("today:L1") == 0
    assert await world.meals.cancel(s1, order_id) is Cancel.ALREADY
    assert await world.ordered("today:L1") == 0  # a second cancel gives nothing back twice

    again = await world.meals.place(s1, world.items["today:L1"], 1)
    assert again.order is not None
    world.at(TODAY, 9, 30)
    assert await world.meals.cancel(s1, again.order.id) is Cancel.CLOSED
    assert (await world.meals.place(s1, world.items["today:L1"], 1)).outcome is Outcome.CLOSED
    assert await world.ordered("today:L1") == 1
    orders = await world.meals.orders(s1)
    assert [(o.id, o.open) for o in orders] == [(again.order.id, False)]


async def test_my_orders_lists_placed_orders_from_today_on(world: World) -> None:
    s1 = world.persons["S1"]
    dinner = await world.meals.place(s1, world.items["today:D1"], 1)
    lunch = await world.meals.place(s1, world.items["L1"], 2)
    breakfast = await world.meals.place(s1, world.items["B1"], 1)
    assert dinner.order and lunch.order and breakfast.order
    await world.meals.cancel(s1, breakfast.order.id)
    orders = await world.meals.orders(s1)
    assert [(o.day, o.slot, o.quantity, o.total_cents) for o in orders] == [
        (TODAY, "dinner", 1, 1500),
        (TOMORROW, "lunch", 2, 3000),
    ]
    world.at(TOMORROW, 8)
    assert [o.slot for o in await world.meals.orders(s1)] == ["lunch"]


async def test_sold_out_and_the_last_portions(world: World) -> None:
    s1, s2, t1 = world.persons["S1"], world.persons["S2"], world.persons["T1"]
    assert (await world.meals.place(s1, world.items["L2"], 2)).outcome is Outcome.PLACED
    short = await world.meals.place(s2, world.items["L2"], 2)
    assert short.outcome is Outcome.SOLD_OUT and short.left == 1
    assert (await world.meals.place(s2, world.items["L2"], 1)).outcome is Outcome.PLACED
    gone = await world.meals.place(t1, world.items["L2"], 1)
    assert gone.outcome is Outcome.SOLD_OUT and gone.left == 0
    assert await world.ordered("L2") == 3
    assert (await world.meals.place(t1, 999_999, 1)).outcome is Outcome.UNKNOWN_ITEM
    async with world.sessions() as session:
        orders = await session.scalar(select(func.count()).select_from(MealOrder))
    assert orders == 2  # nothing written for the refused ones


async def test_prices_are_fixed_when_ordered(world: World) -> None:
    s1 = world.persons["S1"]
    placed = await world.meals.place(s1, world.items["L1"], 2)
    assert placed.order is not None and placed.order.total_cents == 3000
    async with world.sessions.begin() as session:
        await session.execute(
            update(MealItem).where(MealItem.id == world.items["L1"]).values(price_cents=9900)
        )
    (order,) = await world.meals.orders(s1)
    assert order.price_cents == 1500 and order.total_cents == 3000


async def test_no_overselling_with_200_concurrent_orders_on_postgres(postgres_url: str) -> None:
    world = await build_world(postgres_url, MealRules(per_person_limit=1))
    try:
        item_id = await world.add_item("HOT", "CANTEEN-1", TOMORROW, "lunch", 1500, 100)
        people = await world.add_persons(200)
        outcomes = await asyncio.gather(*(world.meals.place(pid, item_id, 1) for pid in people))
        placed = [o for o in outcomes if o.outcome is Outcome.PLACED]
        sold_out = [o for o in outcomes if o.outcome is Outcome.SOLD_OUT]
        assert len(placed) == 100 and len(sold_out) == 100
        async with world.sessions() as session:
            item = await session.get(MealItem, item_id)
            sold = await session.scalar(
                select(func.sum(MealOrder.quantity)).where(
                    MealOrder.item_id == item_id, MealOrder.state == "placed"
                )
            )
            buyers = await session.scalar(
                select(func.count(func.distinct(MealOrder.person_id))).where(
                    MealOrder.item_id == item_id
                )
            )
        assert item is not None and item.ordered == 100 == item.capacity
        assert sold == 100 and buyers == 100
    finally:
        await world.engine.dispose()


async def test_one_person_ordering_twice_at_once_keeps_the_limit(postgres_url: str) -> None:
    world = await build_world(postgres_url, MealRules(per_person_limit=2))
    try:
        item_id = await world.add_item("HOT", "CANTEEN-1", TOMORROW, "lunch", 1500, 100)
        t1 = world.persons["T1"]
        outcomes = await asyncio.gather(*(world.meals.place(t1, item_id, 1) for _ in range(6)))
        assert sorted(o.outcome for o in outcomes).count(Outcome.PLACED) == 2
        assert await world.ordered("HOT") == 2
    finally:
        await world.engine.dispose()


async def test_menus_beyond_the_days_offered_are_not_open_yet(world: World) -> None:
    later = TODAY + timedelta(days=3)  # days_ahead 3: today, tomorrow, the day after
    item_id = await world.add_item("later:L1", "CANTEEN-1", later, "lunch", 1500, 10)
    assert later not in [s.day for s in await world.meals.open_slots()]
    assert await world.meals.menu(later, "lunch") == []
    placed = await world.meals.place(world.persons["T1"], item_id, 1)
    assert placed.outcome is Outcome.NOT_YET
    world.at(TODAY + timedelta(days=1), 8)
    assert later in [s.day for s in await world.meals.open_slots()]
    assert (await world.meals.place(world.persons["T1"], item_id, 1)).outcome is Outcome.PLACED


async def test_a_person_who_leaves_can_no_longer_order(world: World) -> None:
    async with world.sessions.begin() as session:
        await session.execute(
            update(Person).where(Person.id == world.persons["S1"]).values(state="left")
        )
    placed = await world.meals.place(world.persons["S1"], world.items["L1"], 1)
    assert placed.outcome is Outcome.NOT_ACTIVE


async def test_one_person_ordering_at_once_keeps_the_limit_on_either_database(
    world: World,
) -> None:
    # Two devices, or a retried request, ordering for one person across the slot's items:
    # the per-person limit holds on SQLite (one process) as on PostgreSQL.
    t1 = world.persons["T1"]
    items = [world.items["L1"], world.items["L2"], world.items["C2:L1"]] * 2
    outcomes = await asyncio.gather(*(world.meals.place(t1, item, 1) for item in items))
    assert [o.outcome for o in outcomes].count(Outcome.PLACED) == 2
    assert await world.meals.allowance(t1, TOMORROW, "lunch") == 0
    async with world.sessions() as session:
        ordered = await session.scalar(select(func.sum(MealItem.ordered)))
    assert ordered == 2


async def test_cancelling_one_order_at_once_gives_the_portions_back_once(world: World) -> None:
    s1 = world.persons["S1"]
    placed = await world.meals.place(s1, world.items["L1"], 2)
    assert placed.order is not None and await world.ordered("L1") == 2
    results = await asyncio.gather(*(world.meals.cancel(s1, placed.order.id) for _ in range(5)))
    assert sorted(results) == sorted([Cancel.CANCELLED] + [Cancel.ALREADY] * 4)
    assert await world.ordered("L1") == 0


async def test_deadlines_across_midnight_in_campus_time(world: World) -> None:
    # 23:59 on the 26th in Shanghai is 15:59 UTC; 00:30 on the 27th is still the 26th in UTC.
    await world.add_item("B2", "CANTEEN-1", TOMORROW + timedelta(days=1), "breakfast", 500, 10)
    world.at(TODAY, 19, 59)
    assert (TOMORROW, "breakfast") in [(s.day, s.slot) for s in await world.meals.open_slots()]
    world.at(TODAY, 23, 59)
    slots = [(s.day, s.slot) for s in await world.meals.open_slots()]
    assert slots == [(TOMORROW, "lunch"), (TOMORROW + timedelta(days=1), "breakfast")]
    world.at(TOMORROW, 0, 30)
    assert world.meals.today() == TOMORROW
    # A deadline push missed at 20:00 is made up after midnight, for the right day.
    assert (TOMORROW, "breakfast") in due_slots(MealRules(), world.meals.now(), TZ)
    assert datetime.fromtimestamp(world.clock.now, UTC).date() == TODAY
    slots = [(s.day, s.slot) for s in await world.meals.open_slots()]
    assert slots == [(TOMORROW, "lunch"), (TOMORROW + timedelta(days=1), "breakfast")]
    t1 = world.persons["T1"]
    assert (await world.meals.place(t1, world.items["B1"], 1)).outcome is Outcome.CLOSED
    assert (await world.meals.place(t1, world.items["B2"], 1)).outcome is Outcome.PLACED
    world.at(TOMORROW, 20, 0)  # the next day's breakfast closes at 20:00 the day before
    assert (await world.meals.place(t1, world.items["B2"], 1)).outcome is Outcome.CLOSED


async def test_a_red_person_is_always_delivered(world: World) -> None:
    # Whatever the rules file lists, a red person never queues at a canteen.
    world.meals.rules = MealRules(delivery_statuses=frozenset({"yellow"}))
    async with world.sessions.begin() as session:
        await session.execute(
            update(Person).where(Person.id == world.persons["S2"]).values(status="red")
        )
    assert (await world.meals.eligibility(world.persons["S2"])).delivery
    placed = await world.meals.place(world.persons["S2"], world.items["L1"], 1)
    assert placed.order is not None and placed.order.delivery
    assert placed.order.building_name == "Dorm 1"
