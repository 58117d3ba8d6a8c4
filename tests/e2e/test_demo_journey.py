"""The demo as a person uses it: the chat page in headless Chromium, against the real bot.

Each feature adds its steps to this journey.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Demo

pytestmark = pytest.mark.browser


async def _persona_hint(demo: Demo, person_no: str) -> str:
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
    await locator.wait_for(timeout=10_000)
    return locator


@pytest.mark.parametrize("viewport", [(390, 844), (1280, 900)], ids=["phone", "desktop"])
async def test_student_binds_and_taps_an_option(
    demo: Demo, browser: Any, tmp_path: Path, viewport: tuple[int, int]
) -> None:
    width, height = viewport
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(f"{demo.url}/sim")  # without the slash, as people type it
    await page.locator(".person", has_text="S2101001").first.click()

    # The custom menu that `menu sync` created is what the page shows.
    await page.locator("#menu-buttons", has_text="帮助").wait_for(timeout=10_000)
    if await page.locator("#to-keyboard").is_visible():
        await page.click("#to-keyboard")

    hint = await _persona_hint(demo, "S2101001")
    await _say(page, f"绑定 S2101001 {hint}")
    bound = await _bubble(page, "绑定成功")
    assert "张三" in await bound.inner_text()

    # Tap the tappable option in the reply; the answer is the help list.
    await bound.locator("button.option", has_text="全部功能").click()
    answer = await _bubble(page, "你可以发送")
    assert "解绑" in await answer.inner_text()

    shot = tmp_path / f"journey-{width}x{height}.png"
    await page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    await page.close()


async def _as(page: Any, person_no: str) -> None:
    """Switch the page to a persona (the desktop layout lists everyone beside the chat)."""
    await page.locator(".person", has_text=person_no).first.click()
    # The persona's line and its input bar (or menu) render together once it has loaded.
    await page.locator("#whoami", has_text=person_no).wait_for(timeout=10_000)
    if await page.locator("#to-keyboard").is_visible():
        await page.click("#to-keyboard")
    await page.locator("#text").wait_for(state="visible", timeout=10_000)


async def test_check_in_status_and_a_warning_reaching_the_counsellor(
    demo: Demo, browser: Any, tmp_path: Path
) -> None:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.url}/sim/")
    # The counsellor of class CS-2101 binds first, so a push can reach them.
    await _as(page, "F001")
    await _say(page, f"绑定 F001 {await _persona_hint(demo, 'F001')}")
    await _bubble(page, "绑定成功")

    # A student checks in step by step, tapping the options.
    await _as(page, "S2101001")
    await _say(page, f"绑定 S2101001 {await _persona_hint(demo, 'S2101001')}")
    await _bubble(page, "绑定成功")
    await _say(page, "打卡")
    await _bubble(page, "今天的体温")
    await _say(page, "37.9")
    symptoms = await _bubble(page, "有哪些症状")
    await symptoms.locator("button.option", has_text="咳嗽").click()
    chosen = await _bubble(page, "已选症状")
    await chosen.locator("button.option", has_text="完成").click()
    where = await _bubble(page, "你今天在哪里")
    await where.locator("button.option", has_text="在校").click()
    exposure = await _bubble(page, "近14天内")
    await exposure.locator("button.option", has_text="都没有").click()
    done = await _bubble(page, "健康打卡成功")
    assert "红码" in await done.inner_text()

    # Status names the colour, the reason, and what it takes to be green.
    await _say(page, "状态")
    status = await _bubble(page, "今日打卡")  # only the status reply says this
    text = await status.inner_text()
    assert "红码" in text and "体温 37.9°C，伴有咳嗽" in text and "防疫专员" in text

    # The warning (red is urgent: quiet hours do not hold it) reaches the counsellor through
    # the outbox and the demo's dispatcher.
    await _as(page, "F001")
    warning = await _bubble(page, "健康预警")
    assert "S2101001" in await warning.inner_text() and "张*" in await warning.inner_text()
    await warning.locator("button.option", has_text="确认收到").click()
    await _bubble(page, "已确认 1 条预警")
    await page.screenshot(path=str(tmp_path / "journey-warning.png"))
    await page.close()


async def test_pass_code_guard_scan_and_place_check_in(
    demo: Demo, browser: Any, tmp_path: Path
) -> None:
    """Issue 7: a student shows the code, a guard on duty scans it, then a poster check-in."""
    from bot import appkeys as K
    from bot.access_admin import make_poster

    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    await page.goto(f"{demo.url}/sim/")
    await _as(page, "S2101001")
    await _say(page, f"绑定 S2101001 {await _persona_hint(demo, 'S2101001')}")
    await _bubble(page, "绑定成功")
    await _say(page, "健康码")
    await page.locator(".row:not(.mine) img.picture").last.wait_for(timeout=10_000)
    line = await _bubble(page, "有效至")
    assert "绿码" in await line.inner_text()

    # The guard goes on duty; the tag brings the scanner button into their menu.
    await _as(page, "G001")
    await _say(page, f"绑定 G001 {await _persona_hint(demo, 'G001')}")
    await _bubble(page, "绑定成功")
    await _say(page, "上岗 GATE-N")
    await _bubble(page, "已在北门")
    await page.click("#to-menu")
    scanner = page.locator("#menu-buttons button", has_text="扫码核验")
    await scanner.wait_for(timeout=10_000)
    await scanner.click()
    await page.locator("#sheet-body button.code", has_text="张三").first.click()
    verdict = await _bubble(page, "通过")
    text = await verdict.inner_text()
    assert text.startswith("✅") and "张*" in text and "张三" not in text and "绿" not in text
    await page.screenshot(path=str(tmp_path / "journey-guard.png"))

    # A place poster, scanned with the phone's own scanner, is a self check-in.
    await make_poster(demo.app[K.SETTINGS], "CANTEEN-1", tmp_path / "canteen.png")
    await _as(page, "S2101001")
    await page.click("#scan")
    await page.locator("#sheet-body button.code", has_text="place:CANTEEN-1").click()
    checked_in = await _bubble(page, "可以进入")
    assert "第一食堂" in await checked_in.inner_text()
    await page.close()
