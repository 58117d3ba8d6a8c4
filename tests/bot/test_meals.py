"""`订餐`/`meal`, `我的订单`/`my orders`, `取消订单`/`cancelorder`, `订单汇总`/`orders` through the
callback (issue 9), with an injected clock in the campus time zone."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot import appkeys as K
from bot.clock import FrozenClock
from scheduler.jobs import run_job
from scheduler.runner import job_context
from storage.models import OutboxMessage, Person, Place
from storage.models_meals import MealItem, MealOrder
from tests.bot.conftest import MakeBot
from tests.support import WeChat, event_xml, id_tail

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 26)
TOMORROW = TODAY + timedelta(days=1)
EIGHT_AM = datetime(2026, 11, 26, 8, 0, tzinfo=TZ).timestamp()
CONTENT = re.compile(r"msgmenucontent=([^&]+)&")


def taps(reply: str) -> list[str]:
    """What the reply's tappable options send."""
    return CONTENT.findall(reply)


async def _campus(wechat: WeChat, *, canteen_staff: str = "T001") -> dict[str, int]:
    """Places, tomorrow's lunch and breakfast menus, and the canteen role for one person."""
    async with wechat.client.app[K.SESSIONS].begin() as session:
        ids: dict[str, int] = {}
        for code, name, kind in [
            ("C1", "Canteen 1", "canteen"),
            ("D1", "Dorm 1", "dorm"),
        ]:
            place = Place(code=code, name=name, kind=kind)
            session.add(place)
            await session.flush()
            ids[code] = place.id
        for code, slot, name, price, capacity in [
            ("L1", "lunch", "Braised pork & rice", 1500, 5),
            ("L2", "lunch", "Tofu", 1000, 1),
            ("B1", "breakfast", "Buns", 500, 50),
        ]:
            item = MealItem(
                canteen_id=ids["C1"],
                day=TOMORROW,
                slot=slot,
                item_code=code,
                name=name,
                price_cents=price,
                capacity=capacity,
                ordered=0,
            )
            session.add(item)
            await session.flush()
            ids[code] = item.id
        await session.execute(
            update(Person).where(Person.person_no == canteen_staff).values(roles="canteen")
        )
    return ids


async def _returned(wechat: WeChat, person_no: str, home: int | None, days: int = 1) -> None:
    back = datetime.fromtimestamp(EIGHT_AM, UTC) - timedelta(days=days)
    async with wechat.client.app[K.SESSIONS].begin() as session:
        await session.execute(
            update(Person)
            .where(Person.person_no == person_no)
            .values(returned_at=back, home_place_id=home)
        )


async def _bot(make_bot: MakeBot) -> tuple[WeChat, FrozenClock, dict[str, int]]:
    clock = FrozenClock(EIGHT_AM)
    wechat = await make_bot(clock=clock)
    ids = await _campus(wechat)
    return wechat, clock, ids


async def test_staff_orders_step_by_step_then_cancels(make_bot: MakeBot) -> None:
    wechat, _clock, ids = await _bot(make_bot)
    assert "bound" in (await wechat.say("o_t", f"bind T001 {id_tail('T001')}")).lower()

    reply = await wechat.say("o_t", "meal")
    assert "Which meal" in reply and "You pick up your meals at the canteen." in reply
    assert taps(reply) == ["2026-11-27 breakfast", "2026-11-27 lunch"]
    assert "Nov 27 (tomorrow) lunch (order by Nov 27 (tomorrow) 09:30, 6 left)" in reply

    menu = await wechat.say("o_t", "2026-11-27 lunch")
    assert "The menu for Nov 27 (tomorrow) lunch:" in menu
    # A name from menus.csv with markup characters still makes a valid tappable label.
    assert "Canteen 1 · Braised pork ＆ rice ¥15.00 (5 left)" in menu
    assert taps(menu) == [f"{ids['L1']} Braised pork ＆ rice", f"{ids['L2']} Tofu"]

    assert "Please tap an item" in await wechat.say("o_t", "pork")
    quantity = await wechat.say("o_t", f"{ids['L1']} Braised pork ＆ rice")
    assert "How many portions of Braised pork & rice (¥15.00 each)? At most 2." in quantity
    assert taps(quantity) == ["1", "2"]
    assert "from 1 to 2" in await wechat.say("o_t", "3")
    check = await wechat.say("o_t", "2")
    assert "Nov 27 (tomorrow) lunch: Braised pork & rice × 2, ¥30.00 in all." in check
    assert "Pick up at Canteen 1." in check and taps(check) == ["confirm", "cancel"]
    assert "Please confirm" in await wechat.say("o_t", "maybe")
    done = await wechat.say("o_t", "confirm")
    assert done.startswith("Ordered: Nov 27 (tomorrow) lunch, Braised pork & rice × 2, ¥30.00")
    assert "Pick it up at Canteen 1." in done
    assert "You can cancel it until Nov 27 (tomorrow) 09:30." in done

    async with wechat.client.app[K.SESSIONS]() as session:
        order = (await session.execute(select(MealOrder))).scalar_one()
        item = await session.get(MealItem, ids["L1"])
    assert (order.quantity, order.price_cents, order.delivery) == (2, 1500, False)
    assert item is not None and item.ordered == 2

    # The limit is 2 portions per meal: picking lunch again says so.
    await wechat.say("o_t", "meal")
    limit = await wechat.say("o_t", "2026-11-27 lunch")
    assert "You have ordered 2 portions for Nov 27 (tomorrow) lunch" in limit
    assert taps(limit) == ["myorders"]

    mine = await wechat.say("o_t", "my orders")
    assert f"No. {order.id} Nov 27 (tomorrow) lunch: Braised pork & rice × 2, ¥30.00" in mine
    assert taps(mine) == [f"cancelorder {order.id}"]
    assert "is cancelled" in await wechat.say("o_t", f"cancelorder {order.id}")
    assert "cancelled already" in await wechat.say("o_t", f"cancelorder {order.id}")
    assert "no order no. 999" in await wechat.say("o_t", "cancelorder 999")
    assert "cancelorder <order no.>" in await wechat.say("o_t", "cancelorder abc")
    assert "no meal orders" in await wechat.say("o_t", "myorders")


async def test_a_returned_student_has_meals_delivered(make_bot: MakeBot) -> None:
    wechat, _clock, ids = await _bot(make_bot)
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert "仅面向已返校人员" in await wechat.say("o_s", "订餐")

    await _returned(wechat, "S001", ids["D1"])
    reply = await wechat.say("o_s", "订餐")
    assert "你目前的餐食将配送到所住楼栋。" in reply
    assert "11月27日（明天）午餐" in reply
    await wechat.say("o_s", "2026-11-27 lunch")
    await wechat.say("o_s", str(ids["L2"]))
    check = await wechat.say("o_s", "1")
    assert "配送到你所住楼栋。" in check and "确认" in taps(check)
    done = await wechat.say("o_s", "确认")
    assert done.startswith("订餐成功：11月27日（明天）午餐，Tofu × 1，共 ¥10.00")
    assert "将配送到Dorm 1。" in done

    # The last portion is gone: the menu says so and offers only what is left.
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_t", "meal")
    menu = await wechat.say("o_t", "2026-11-27 lunch")
    assert "Canteen 1 · Tofu (sold out)" in menu
    assert taps(menu) == [f"{ids['L1']} Braised pork ＆ rice"]
    assert "Tofu is sold out." in await wechat.say("o_t", str(ids["L2"]))


async def test_the_deadline_is_checked_again_at_confirmation(make_bot: MakeBot) -> None:
    wechat, clock, ids = await _bot(make_bot)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_t", "meal")
    await wechat.say("o_t", "2026-11-27 breakfast")
    await wechat.say("o_t", str(ids["B1"]))
    await wechat.say("o_t", "1")
    clock.now = datetime(2026, 11, 26, 20, 0, tzinfo=TZ).timestamp()  # breakfast closes
    assert "are closed" in await wechat.say("o_t", "confirm")
    reply = await wechat.say("o_t", "meal")
    assert taps(reply) == ["2026-11-27 lunch"]
    assert "are closed" in await wechat.say("o_t", "2026-11-27 breakfast")
    clock.now = datetime(2026, 11, 27, 9, 30, tzinfo=TZ).timestamp()
    assert "No menu is open" in await wechat.say("o_t", "meal")


async def test_unbound_and_bad_answers(make_bot: MakeBot) -> None:
    wechat, _clock, _ids = await _bot(make_bot)
    assert "请先绑定" in await wechat.say("o_x", "meal")
    assert "请先绑定" in await wechat.say("o_x", "my orders")
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_t", "meal")
    for junk in ("tomorrow", "2026-02-30 lunch", "2026-11-27 supper", "x" * 500):
        assert "Which meal" in await wechat.say("o_t", junk)
    assert "Cancelled" in await wechat.say("o_t", "cancel")
    # The MEALS menu button starts the same conversation.
    reply = await wechat.reply(event_xml("o_t", "CLICK", "MEALS"))
    assert reply is not None and "Which meal" in str(reply["Content"])


async def test_canteen_staff_see_the_counts_and_get_them_at_the_deadline(
    make_bot: MakeBot,
) -> None:
    wechat, clock, ids = await _bot(make_bot)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    await _returned(wechat, "S001", ids["D1"])
    for step in ("订餐", "2026-11-27 lunch", str(ids["L1"]), "2", "确认"):
        await wechat.say("o_s", step)

    assert "只有食堂工作人员" in await wechat.say("o_s", "订单汇总")
    assert "There is no menu for 2026-11-26." in await wechat.say("o_t", "orders")
    counts = await wechat.say("o_t", "orders tomorrow")
    assert "Meal orders for 2026-11-27:" in counts
    assert "Braised pork & rice: 2 of 5 portions (delivery 2, pick-up 0)" in counts
    assert "Delivery by building: Dorm 1 2" in counts
    assert "Buns: 0 of 50 portions" in counts
    assert "orders 2026-11-27" in taps(counts)
    assert counts == await wechat.say("o_t", "orders 2026-11-27")
    assert "YYYY-MM-DD" in await wechat.say("o_t", "orders someday")

    help_staff = await wechat.say("o_t", "help")
    assert "orders [tomorrow | YYYY-MM-DD]" in help_staff and "meal —" in help_staff
    help_student = await wechat.say("o_s", "帮助")
    assert "订单汇总" not in help_student and "订餐 —" in help_student
    assert "我的订单 —" in help_student

    # At 09:30 tomorrow lunch closes; the next run of the job pushes the final counts.
    clock.now = datetime(2026, 11, 27, 9, 35, tzinfo=TZ).timestamp()
    app = wechat.client.app
    ctx = job_context(app[K.SETTINGS], app[K.SESSIONS], app[K.KV_STORE], clock)
    assert await run_job(ctx, "meals_deadline_push") == "1 meal slots closed, 1 pushes queued"
    assert await run_job(ctx, "meals_deadline_push") == "1 meal slots closed, 0 pushes queued"
    async with app[K.SESSIONS]() as session:
        (push,) = (
            await session.execute(
                select(OutboxMessage).where(OutboxMessage.kind == "meals_final_counts")
            )
        ).scalars()
    assert push.payload["text"].startswith("Orders for Nov 27 (today) lunch are closed.")
    assert "Braised pork & rice: 2 of 5 portions" in push.payload["text"]


async def test_hostile_answers_get_a_clear_reply(make_bot: MakeBot) -> None:
    wechat, _clock, ids = await _bot(make_bot)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_t", "meal")
    # A stale tap from an earlier menu, and junk, at the meal step.
    for junk in ("2026-11-25 lunch", "2026-11-26 lunch", "'; DROP TABLE meal_items;--", "🍚"):
        assert "Which meal" in await wechat.say("o_t", junk)
    assert "are not open yet" in await wechat.say("o_t", "2026-11-29 lunch")  # days_ahead 3
    await wechat.say("o_t", "2026-11-27 lunch")
    # Digits int() cannot read ("²"), an item of another slot, a huge id, SQL: the menu again.
    for junk in ("²", "①", f"{ids['B1']} Buns", "99999999999999999999", "x OR 1=1", "🍚"):
        reply = await wechat.say("o_t", junk)
        assert "Please tap an item of the menu." in reply, junk
        assert taps(reply) == [f"{ids['L1']} Braised pork ＆ rice", f"{ids['L2']} Tofu"]
    await wechat.say("o_t", str(ids["L1"]))
    for junk in ("0", "-1", "²", "3", "99999999999999999999", "1; DELETE FROM meal_orders", "🍚"):
        reply = await wechat.say("o_t", junk)
        assert "Please send a whole number from 1 to 2." in reply, junk
    # Full-width digits, as a Chinese keyboard types them, are read.
    assert "× 1, ¥15.00 in all." in await wechat.say("o_t", "１")
    done = await wechat.say("o_t", "confirm")
    assert done.startswith("Ordered:")
    for junk in ("²", "99999999999999999999", "-1", "1 OR 1=1"):
        assert "cancelorder <order no.>" in await wechat.say("o_t", f"cancelorder {junk}"), junk
    # Someone else's order is not found, and stays placed.
    async with wechat.client.app[K.SESSIONS]() as session:
        order = (await session.execute(select(MealOrder))).scalar_one()
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert f"你没有订单号为 {order.id} 的订单" in await wechat.say("o_s", f"取消订单 {order.id}")
    assert f"No. {order.id}" in await wechat.say("o_t", "my orders")
    assert "is cancelled" in await wechat.say("o_t", f"cancelorder #{order.id}")


async def test_help_lists_meal_commands_only_to_who_may_order(make_bot: MakeBot) -> None:
    wechat, _clock, _ids = await _bot(make_bot)
    async with wechat.client.app[K.SESSIONS].begin() as session:
        await session.execute(
            update(Person).where(Person.person_no == "S002").values(category="contractor")
        )
    await wechat.say("o_c", f"绑定 S002 {id_tail('S002')}")
    contractor = await wechat.say("o_c", "帮助")
    assert "订餐" not in contractor and "我的订单" not in contractor
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    staff = await wechat.say("o_t", "help")
    assert "meal —" in staff and "myorders —" in staff


MAX_REPLY_BYTES = 2048  # WeChat drops a text reply longer than this


async def test_a_big_menu_asks_for_the_canteen_first_and_every_reply_fits(
    make_bot: MakeBot,
) -> None:
    wechat, _clock, ids = await _bot(make_bot)
    async with wechat.client.app[K.SESSIONS].begin() as session:
        canteen = Place(code="C2", name="第二食堂 North Canteen", kind="canteen")
        session.add(canteen)
        await session.flush()
        for n in range(12):
            for canteen_id in (ids["C1"], canteen.id):
                session.add(
                    MealItem(
                        canteen_id=canteen_id,
                        day=TOMORROW,
                        slot="lunch",
                        item_code=f"X{n:02d}",
                        name=f"红烧肉盖浇饭套餐 Braised pork rice set no. {n}",
                        price_cents=1500,
                        capacity=100,
                        ordered=0,
                    )
                )
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_t", "meal")
    which = await wechat.say("o_t", "2026-11-27 lunch")
    assert len(which.encode()) <= MAX_REPLY_BYTES
    assert "The menu for Nov 27 (tomorrow) lunch is long. Which canteen?" in which
    assert taps(which) == ["C1 Canteen 1", "C2 第二食堂 North Canteen"]
    assert "Please tap a canteen." in await wechat.say("o_t", "C9 Nowhere")
    menu = await wechat.say("o_t", "C2 第二食堂 North Canteen")
    assert len(menu.encode()) <= MAX_REPLY_BYTES
    assert "The menu for Nov 27 (tomorrow) lunch:" in menu
    assert "Canteen 1" not in menu and "第二食堂 North Canteen · " in menu
    picks = taps(menu)
    assert len(picks) >= 5 and all("Braised pork rice set" in p for p in picks)
    again = await wechat.say("o_t", "no such dish")
    assert "Please tap an item" in again and taps(again) == picks
    assert len(again.encode()) <= MAX_REPLY_BYTES
    assert "At most 2." in await wechat.say("o_t", picks[0])
    await wechat.say("o_t", "2")
    assert (await wechat.say("o_t", "confirm")).startswith("Ordered:")

    # The canteen's counts of 26 items: cut to one message, the day options kept after the cut.
    await _returned(wechat, "T001", None)
    async with wechat.client.app[K.SESSIONS].begin() as session:
        await session.execute(
            update(Person).where(Person.person_no == "T001").values(roles="canteen")
        )
    counts = await wechat.say("o_t", "orders tomorrow")
    assert len(counts.encode()) <= MAX_REPLY_BYTES
    assert "more lines (healthbot export orders has them all)" in counts
    assert taps(counts) == ["orders 2026-11-26", "orders 2026-11-27"]
