"""The dashboard in headless Chromium: a signed link opens it, the figures are the seeded ones,
the drill-down and the language switch work, and it reads at phone and desktop sizes
(screenshots in docs/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot import appkeys as K
from bot.app import create_app
from bot.clock import FrozenClock
from bot.settings import Settings
from tests.campus.test_dashboard_queries import NOW, Seeded, seed_dashboard
from tests.support import DATA_KEY, port_of, reserved_socket

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXTRA = 30  # more students per class, so the page looks like a campus
PERSONS = 25 + 3 * EXTRA
REPORTED = 14 + 3 * EXTRA


@dataclass
class Site:
    url: str
    app: web.Application
    seeded: Seeded


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    sock = reserved_socket()
    port = port_of(sock)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path}/dash.db",
        data_key=DATA_KEY,
        public_url=f"http://127.0.0.1:{port}",
    )
    app = create_app(settings, clock=FrozenClock(NOW.timestamp()))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        seeded = await seed_dashboard(app[K.SESSIONS], extra_per_class=EXTRA)
        yield Site(f"http://127.0.0.1:{port}", app, seeded)
    finally:
        await runner.cleanup()


async def _link(site: Site, person_no: str, locale: str = "zh_CN") -> str:
    offer = await site.app[K.SERVICES]["dashboard"].offer(site.seeded.ids[person_no], locale)
    assert offer.url.startswith(site.url + "/dashboard?t=")
    return str(offer.url)


async def _value(page: Any, ident: str) -> str:
    return str(await page.locator(f"#{ident} .value").inner_text()).strip()


@pytest.mark.parametrize(
    ("size", "name"), [((390, 844), "phone"), ((1280, 800), "desktop")], ids=["phone", "desktop"]
)
async def test_an_admin_reads_the_dashboard(
    site: Site, browser: Any, size: tuple[int, int], name: str
) -> None:
    width, height = size
    page = await browser.new_page(viewport={"width": width, "height": height})
    await page.goto(await _link(site, "A001"))
    assert await page.title() == "健康校园数据看板"
    assert await _value(page, "kpi-checkin") == f"{100 * REPORTED / PERSONS:.1f}%"
    assert f"{REPORTED} / {PERSONS}" in await page.locator("#kpi-checkin").inner_text()
    assert await _value(page, "kpi-abnormal") == "3"
    assert await _value(page, "kpi-warnings") == "3"
    assert await _value(page, "kpi-returned") == str(7 + 3 * EXTRA)
    cs = page.locator('tr[data-unit="CS"]')
    assert "计算机学院" in await cs.inner_text()
    assert (
        await cs.locator("td.rate").inner_text()
        == f"{100 * (12 + 2 * EXTRA) / (15 + 2 * EXTRA):.1f}%"
    )
    assert await page.locator("#trend rect").count() == 14
    # Nothing wider than the screen except inside the tables' own scroll boxes.
    overflow = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    DOCS.mkdir(exist_ok=True)
    shot = DOCS / f"dashboard-{name}.png"
    await page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000

    # Drill down to the college, then to a class; then read it in English.
    await cs.locator("a").click()
    await page.locator("#crumbs", has_text="计算机学院").wait_for()
    assert await _value(page, "kpi-checkin") == f"{100 * (12 + 2 * EXTRA) / (15 + 2 * EXTRA):.1f}%"
    assert await page.locator('tr[data-unit="MED"]').count() == 0
    await page.locator("a.lang").click()
    await page.locator("h1", has_text="Healthy Campus dashboard").wait_for()
    assert "Checked in today" in await page.locator("#kpi-checkin").inner_text()
    assert await page.locator('tr[data-unit="CS-2101"]').count() == 1
    await page.close()


async def test_a_counsellor_sees_their_class_and_an_expired_link_is_refused(
    site: Site, browser: Any
) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    link = await _link(site, "F001", "en")
    await page.goto(link)
    assert await _value(page, "kpi-checkin") == f"{100 * (7 + EXTRA) / (10 + EXTRA):.1f}%"
    assert "示范大学" not in await page.locator("#crumbs").inner_text()
    clock = site.app[K.CLOCK]
    assert isinstance(clock, FrozenClock)
    clock.advance(15 * 60)
    response = await page.goto(link)
    assert response is not None and response.status == 403
    assert "This link has expired." in await page.locator("body").inner_text()
    await page.close()
