"""Return to campus in the demo (issue 8): a student applies by tapping, the counsellor and the
college approve from their pushes, and a guard's scan at the gate records the arrival."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Demo

pytestmark = pytest.mark.browser


async def _hint(demo: Demo, person_no: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{demo.url}/demo/personas") as resp:
            personas = (await resp.json())["personas"]
    return next(p["bind_hint"] for p in personas if p["person_no"] == person_no)


async def _say(page: Any, text: str) -> None:
    await page.fill("#text", text)
    await page.click("#send")


async def _bubble(page: Any, text: str) -> Any:
    locator = page.locator(".row:not(.mine) .bubble", has_text=text).last
    await locator.wait_for(timeout=15_000)
    return locator


async def _as(page: Any, person_no: str) -> None:
    await page.locator(".person", has_text=person_no).first.click()
    await page.locator("#whoami", has_text=person_no).wait_for(timeout=10_000)
    if await page.locator("#to-keyboard").is_visible():
        await page.click("#to-keyboard")
    await page.locator("#text").wait_for(state="visible", timeout=10_000)


async def _bind(page: Any, demo: Demo, person_no: str) -> None:
    await _as(page, person_no)
    await _say(page, f"绑定 {person_no} {await _hint(demo, person_no)}")
    await _bubble(page, "绑定成功")


async def test_apply_approve_and_arrive(demo: Demo, browser: Any, tmp_path: Path) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.url}/sim/")
    # The approvers bind first, so their pushes reach them.
    await _bind(page, demo, "F001")
    await _bind(page, demo, "F002")

    # The student applies, tapping the batch, the day and the transport.
    await _bind(page, demo, "S2101001")
    await _say(page, "返校")
    batches = await _bubble(page, "你随哪个批次返校")
    await batches.locator("button.option", has_text="Graduates").click()
    days = await _bubble(page, "你哪天到校")
    await days.locator("button.option").nth(1).click()  # tomorrow
    transport = await _bubble(page, "交通工具")
    await transport.locator("button.option", has_text="火车").click()
    await _bubble(page, "请发送车次")
    await _say(page, "G1234")
    await _bubble(page, "你从哪里出发")
    await _say(page, "湖北省武汉市")
    summary = await _bubble(page, "请核对你的申请")
    assert "G1234" in await summary.inner_text()
    await summary.locator("button.option", has_text="提交").click()
    submitted = await _bubble(page, "已提交")
    assert "A1" in await submitted.inner_text()
    await page.screenshot(path=str(tmp_path / "return-applied.png"))

    # The counsellor and then the college approve from their 待审批 lists (their pushes say the
    # same, but quiet hours may hold a push until morning).
    await _as(page, "F001")
    await _say(page, "待审批")
    waiting = await _bubble(page, "待你审批的返校申请：1 份")
    text = await waiting.inner_text()
    assert "A1" in text and "张*" in text and "张三" not in text
    await waiting.locator("button.option", has_text="同意 A1").click()
    await _bubble(page, "转下一步审批")
    await _as(page, "F002")
    await _say(page, "待审批")
    waiting = await _bubble(page, "待你审批的返校申请：1 份")
    await waiting.locator("button.option", has_text="同意 A1").click()
    await _bubble(page, "已通过 A1")

    # The student sees it approved and opens the pass code.
    await _as(page, "S2101001")
    await _say(page, "返校")
    await _bubble(page, "你的返校申请 A1：已通过")
    await _say(page, "健康码")
    await page.locator(".row:not(.mine) img.picture").last.wait_for(timeout=10_000)

    # The guard on duty at the north gate scans it: the arrival is recorded.
    await _bind(page, demo, "G001")
    await _say(page, "上岗 GATE-N")
    await _bubble(page, "已在北门")
    await page.click("#to-menu")
    scanner = page.locator("#menu-buttons button", has_text="扫码核验")
    await scanner.wait_for(timeout=10_000)
    await scanner.click()
    await page.locator("#sheet-body button.code", has_text="张三").first.click()
    verdict = await _bubble(page, "返校：已登记到校")
    assert (await verdict.inner_text()).startswith("✅")
    await page.screenshot(path=str(tmp_path / "return-arrived.png"))

    # Back on campus: the student cannot apply again.
    await _as(page, "S2101001")
    await _say(page, "返校")
    await _bubble(page, "你已经返校")
    await page.close()


async def test_a_student_without_two_weeks_of_check_ins_is_told_why(
    demo: Demo, browser: Any
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.url}/sim/")
    await _bind(page, demo, "S2101005")
    await _say(page, "返校")
    reply = await _bubble(page, "暂时还不能申请返校")
    assert "连续打卡 14 天" in await reply.inner_text()
    await page.close()
