"""Issue 9 in the browser: a demo persona orders a meal in the chat page, and the canteen's
summary counts it. The demo menu is seeded relative to the demo's today, so this never goes
stale."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.e2e.conftest import Demo
from tests.e2e.test_demo_journey import _as, _bubble, _persona_hint, _say

pytestmark = pytest.mark.browser


async def test_canteen_staff_order_a_meal_and_see_it_counted(
    demo: Demo, browser: Any, tmp_path: Path
) -> None:
    from bot import appkeys as K
    from storage.models_meals import MealItem, MealOrder

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.url}/sim/")
    # K001 is canteen staff: staff may always order, and see the orders.
    await _as(page, "K001")
    await _say(page, f"绑定 K001 {await _persona_hint(demo, 'K001')}")
    await _bubble(page, "绑定成功")

    await _say(page, "订餐")
    meals = await _bubble(page, "你要订哪一餐")
    assert "到食堂自取" in await meals.inner_text()
    await meals.locator("button.option").first.click()
    menu = await _bubble(page, "菜单：")
    assert "第一食堂" in await menu.inner_text()
    await menu.locator("button.option").first.click()
    how_many = await _bubble(page, "要几份")
    await how_many.locator("button.option", has_text="1").first.click()
    check = await _bubble(page, "共 ¥")
    await check.locator("button.option", has_text="确认下单").click()
    done = await _bubble(page, "订餐成功")
    text = await done.inner_text()
    assert "× 1" in text and "第一食堂" in text
    await page.screenshot(path=str(tmp_path / "journey-meal.png"))

    async with demo.app[K.SESSIONS]() as session:
        day = (
            await session.execute(
                select(MealItem.day).join(MealOrder, MealOrder.item_id == MealItem.id)
            )
        ).scalar_one()
    await _say(page, f"订单汇总 {day.isoformat()}")
    counts = await _bubble(page, "订单汇总：")
    assert "1/" in await counts.inner_text()

    await _say(page, "我的订单")
    mine = await _bubble(page, "你的订单")
    await mine.locator("button.option", has_text="取消订单").first.click()
    await _bubble(page, "已取消")
    await page.close()
