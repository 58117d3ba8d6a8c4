"""The canteens' numbers (issue 9): counts per slot, item and building; the deadline push;
the orders export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.i18n import translator
from campus.meals.deadlines import due_slots, push_final_counts
from campus.meals.export import COLUMNS, UnknownCanteen, export_orders
from campus.meals.rules import MealRules
from campus.meals.summary import slot_counts
from campus.meals.texts import money, render_counts
from campus.notifications import Notifications
from storage.models import AuditEntry, OutboxMessage, Person
from tests.campus.meals_world import TODAY, TOMORROW, TZ, World, build_world, sqlite_url


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
    meals, p, i = w.meals, w.persons, w.items
    for person, item, quantity in [
        ("S1", "L1", 2),  # delivery to Dorm 1
        ("T2", "L1", 1),  # delivery to House 1 (yellow)
        ("S5", "L1", 1),  # delivery, no home place
        ("S2", "L1", 1),  # pick-up
        ("T1", "L2", 1),  # pick-up
        ("S1", "B1", 1),
        ("T1", "C2:L1", 1),
    ]:
        assert (await meals.place(p[person], i[item], quantity)).order is not None
    cancelled = await meals.place(p["S2"], i["L2"], 1)
    assert cancelled.order is not None
    await meals.cancel(p["S2"], cancelled.order.id)
    try:
        yield w
    finally:
        await w.engine.dispose()


async def test_counts_per_canteen_slot_item_and_building(world: World) -> None:
    async with world.sessions() as session:
        counts = await slot_counts(session, day=TOMORROW)
        only_two = await slot_counts(session, day=TOMORROW, canteen_ids=[world.places["CANTEEN-2"]])
        nothing = await slot_counts(session, day=TODAY)
    assert [(c.canteen_code, c.slot, c.item_code) for c in counts] == [
        ("CANTEEN-1", "breakfast", "B1"),
        ("CANTEEN-1", "lunch", "L1"),
        ("CANTEEN-1", "lunch", "L2"),
        ("CANTEEN-2", "lunch", "L1"),
    ]
    l1 = counts[1]
    assert (l1.ordered, l1.capacity, l1.left, l1.orders) == (5, 5, 0, 4)
    assert (l1.delivered, l1.pickup) == (4, 1)
    assert [(b.code, b.portions) for b in l1.buildings] == [("DORM-1", 2), ("HOUSE-1", 1)]
    l2 = counts[2]
    assert (l2.ordered, l2.delivered, l2.pickup, l2.buildings) == (1, 0, 1, ())  # cancelled: out
    assert [(c.canteen_code, c.ordered) for c in only_two] == [("CANTEEN-2", 1)]
    assert nothing == []


async def test_counts_read_in_both_languages(world: World) -> None:
    async with world.sessions() as session:
        counts = await slot_counts(session, day=TOMORROW)
    zh = "\n".join(render_counts(counts, TODAY, "zh_CN", translator("zh_CN")))
    assert "【Canteen 1 · " in zh and "午餐】" in zh
    assert "Dish L1：5/5 份（配送 4，自取 1）" in zh
    assert "按楼栋配送：Dorm 1 2，House 1 1，无住址楼栋 1" in zh
    en = "\n".join(render_counts(counts, TODAY, "en", translator("en"), slot="lunch"))
    assert "breakfast" not in en
    assert "Dish L2: 1 of 3 portions (delivery 0, pick-up 1)" in en
    assert money(1500) == "¥15.00" and money(5) == "¥0.05"


async def test_the_final_counts_reach_canteen_staff_once_at_the_deadline(world: World) -> None:
    notifications = Notifications(world.sessions)
    rules = MealRules()
    world.at(TODAY, 19, 59)
    assert await push_final_counts(world.sessions, notifications, rules, TZ, world.meals.now()) == (
        0,
        0,
    )
    world.at(TODAY, 20, 0)  # tomorrow's breakfast closes
    # Today's dinner closed at 15:00 (within the catch-up window) but has no menu.
    assert due_slots(rules, world.meals.now(), TZ) == [(TODAY, "dinner"), (TOMORROW, "breakfast")]
    assert await push_final_counts(world.sessions, notifications, rules, TZ, world.meals.now()) == (
        1,
        1,
    )
    world.at(TODAY, 20, 5)  # the next run pushes nothing twice
    assert await push_final_counts(world.sessions, notifications, rules, TZ, world.meals.now()) == (
        1,
        0,
    )
    world.at(TOMORROW, 9, 35)  # lunch closed at 09:30; both canteens in one push
    assert await push_final_counts(world.sessions, notifications, rules, TZ, world.meals.now()) == (
        1,
        1,
    )
    async with world.sessions() as session:
        pushes = list(
            (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        )
    assert [p.person_id for p in pushes] == [world.persons["T1"]] * 2  # the canteen role only
    breakfast, lunch = (p.payload["text"] for p in pushes)
    assert breakfast.startswith("Orders for") and "breakfast are closed" in breakfast
    assert "Dish B1: 1 of 10 portions" in breakfast and "lunch" not in breakfast
    assert "Canteen 1" in lunch and "Canteen 2" in lunch
    assert "Delivery by building: Dorm 1 2, House 1 1, no home building 1" in lunch


async def test_export_orders_as_csv(world: World) -> None:
    out = io.StringIO()
    assert await export_orders(world.sessions, out, TOMORROW) == 7
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["canteen_code"], r["slot"], r["item_code"]) for r in rows][:3] == [
        ("CANTEEN-1", "breakfast", "B1"),
        ("CANTEEN-1", "lunch", "L1"),
        ("CANTEEN-1", "lunch", "L1"),
    ]
    s1 = next(r for r in rows if r["person_no"] == "S1" and r["item_code"] == "L1")
    assert s1["name"] == "张*" and "张三" not in out.getvalue()  # masked
    assert (s1["quantity"], s1["price_cents"], s1["total_cents"]) == ("2", "1500", "3000")
    assert (s1["delivery"], s1["building_code"]) == ("delivery", "DORM-1")
    assert s1["ordered_at"] == "2026-11-26T00:00:00+00:00"
    local = io.StringIO()
    await export_orders(world.sessions, local, TOMORROW, "CANTEEN-2", TZ)
    assert "2026-11-26T08:00:00+08:00" in local.getvalue()
    s2 = next(r for r in rows if r["person_no"] == "S2")
    assert (s2["delivery"], s2["building_code"]) == ("pickup", "")

    only = io.StringIO()
    assert await export_orders(world.sessions, only, TOMORROW, "CANTEEN-2") == 1
    with pytest.raises(UnknownCanteen):
        await export_orders(world.sessions, io.StringIO(), TOMORROW, "DORM-1")
    empty = io.StringIO()
    assert await export_orders(world.sessions, empty, TODAY) == 0
    assert empty.getvalue() == ",".join(COLUMNS) + "\n"
    async with world.sessions() as session:
        reasons = list((await session.execute(select(AuditEntry.reason))).scalars())
    assert f"export orders {TOMORROW} canteen CANTEEN-2" in reasons


async def test_a_person_turned_red_after_ordering_pick_up_is_delivered_at_the_deadline(
    world: World,
) -> None:
    # S2 ordered lunch for pick-up while green; red since: the final counts deliver it.
    async with world.sessions.begin() as session:
        await session.execute(
            update(Person).where(Person.id == world.persons["S2"]).values(status="red")
        )
    world.at(TOMORROW, 9, 35)
    notifications = Notifications(world.sessions)
    assert await push_final_counts(
        world.sessions, notifications, MealRules(), TZ, world.meals.now()
    ) == (1, 1)
    async with world.sessions() as session:
        text = (await session.execute(select(OutboxMessage.payload))).scalar_one()["text"]
        counts = await slot_counts(session, day=TOMORROW)
    assert "Dish L1: 5 of 5 portions (delivery 5, pick-up 0)" in text
    assert "Delivery by building: Dorm 1 3, House 1 1, no home building 1" in text
    l1 = next(c for c in counts if c.item_code == "L1" and c.canteen_code == "CANTEEN-1")
    assert [(b.code, b.portions) for b in l1.buildings] == [("DORM-1", 3), ("HOUSE-1", 1)]
    out = io.StringIO()
    await export_orders(world.sessions, out, TOMORROW)
    s2 = next(r for r in csv.DictReader(io.StringIO(out.getvalue())) if r["person_no"] == "S2")
    assert (s2["delivery"], s2["building_code"]) == ("delivery", "DORM-1")
