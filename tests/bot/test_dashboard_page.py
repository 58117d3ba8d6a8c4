"""`统计`/`dashboard` by chat and the page its link opens: who gets a link, what the page
shows, and every bad link answered with a localised 4xx page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select, update

from bot import appkeys as K
from bot.clock import FrozenClock
from campus.links import LinkSigner
from storage.models import AuditEntry, Person, UnitResponsible, WeChatAccount
from tests.bot.conftest import MakeBot
from tests.campus.test_dashboard_queries import NOW, Seeded, seed_dashboard
from tests.support import DATA_KEY, WeChat

LINK = re.compile(r'<a href="([^"]+)">')


async def _bot(make_bot: MakeBot) -> tuple[WeChat, Seeded, FrozenClock]:
    clock = FrozenClock(NOW.timestamp())
    wechat = await make_bot(seed=False, clock=clock, public_url="https://hc.example")
    sessions = wechat.client.app[K.SESSIONS]
    seeded = await seed_dashboard(sessions)
    # Bound accounts, seen "just now" whatever the clock the dispatcher reads.
    seen = datetime.now(UTC) + timedelta(days=1)
    async with sessions.begin() as s:
        for no in ("A001", "F002", "F001", "R009", "S01", "H001"):
            s.add(WeChatAccount(openid=f"o_{no}", person_id=seeded.ids[no], last_seen_at=seen))
    return wechat, seeded, clock


def _path(reply: str) -> str:
    """The link of a chat reply, as a path on the test server."""
    (url,) = LINK.findall(reply)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://hc.example"
    return f"{parts.path}?{parts.query}".replace("&amp;", "&")


async def _get(wechat: WeChat, path: str) -> tuple[int, str]:
    if path.startswith("?"):  # the page's own links are relative to it
        path = "/dashboard" + path
    resp = await wechat.client.get(path)
    return resp.status, await resp.text()


def _cell(html: str, ident: str) -> str:
    """The value shown on a headline card."""
    match = re.search(rf'id="{ident}".*?class="value">([^<]*)<', html, re.S)
    assert match, ident
    return match.group(1)


async def test_an_admin_opens_the_whole_campus_and_drills_down(make_bot: MakeBot) -> None:
    wechat, _seeded, _clock = await _bot(make_bot)
    assert "统计" in await wechat.say("o_A001", "帮助")
    reply = await wechat.say("o_A001", "统计")
    assert "有效期至 15:45" in reply and "打开数据看板" in reply
    status, html = await _get(wechat, _path(reply))
    assert status == 200
    assert "健康校园数据看板" in html and '<html lang="zh-CN">' in html
    assert _cell(html, "kpi-checkin") == "56.0%"  # 14 of 25 active persons
    assert "14 / 25" in html
    assert _cell(html, "kpi-abnormal") == "3"
    assert _cell(html, "kpi-warnings") == "3"
    assert _cell(html, "kpi-returned") == "7"
    # One row per college (and the university's own staff), each a drill-down link.
    assert 'data-unit="CS"' in html and 'data-unit="MED"' in html
    assert "示范大学（本级人员）" in html
    cs_link = re.search(r'<a href="([^"]+)">计算机学院</a>', html)
    assert cs_link
    # Masked names only; nothing of a full name.
    assert "学***号" in html and "学生09号" not in html
    # Gates, returns and meals.
    assert 'data-gate="GATE-N"' in html and 'data-batch="B1"' in html and "第一食堂" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org", "")

    status, college = await _get(wechat, cs_link.group(1).replace("&amp;", "&"))
    assert status == 200
    assert _cell(college, "kpi-checkin") == "80.0%"  # 12 of 15
    assert 'data-unit="CS-2101"' in college and 'data-unit="MED"' not in college
    assert "示范大学</a> › 计算机学院" in college  # the way back up

    english = re.search(r'<a class="lang" href="([^"]+)">English</a>', college)
    assert english
    status, page = await _get(wechat, english.group(1).replace("&amp;", "&"))
    assert status == 200 and '<html lang="en">' in page
    assert "Checked in today" in page and "Open warnings" in page


async def test_a_dean_sees_their_college_and_nothing_else(make_bot: MakeBot) -> None:
    wechat, _seeded, _clock = await _bot(make_bot)
    await wechat.say("o_F002", "English")
    reply = await wechat.say("o_F002", "dashboard")
    assert reply.startswith("Your dashboard (valid until 15:45):")
    path = _path(reply)
    status, html = await _get(wechat, path)
    assert status == 200 and '<html lang="en">' in html
    assert _cell(html, "kpi-checkin") == "80.0%"
    assert "示范大学" not in html  # no way up past their own unit
    status, html = await _get(wechat, path + "&u=MED")
    assert status == 404 and "There is no such unit among yours." in html

    # Their role goes: the very next view is refused.
    async with wechat.client.app[K.SESSIONS].begin() as s:
        await s.execute(update(Person).where(Person.person_no == "F002").values(roles=""))
    status, html = await _get(wechat, path)
    assert status == 403 and "You may no longer open the dashboard." in html


async def test_who_may_not_ask(make_bot: MakeBot) -> None:
    wechat, _seeded, _clock = await _bot(make_bot)
    assert "统计" not in await wechat.say("o_S01", "帮助")
    assert "只有负责人、防疫专员和管理员可以查看数据看板。" in await wechat.say("o_S01", "统计")
    assert "你目前没有负责的单位。" in await wechat.say("o_R009", "统计")
    assert "/dashboard" not in await wechat.say("o_unbound", "统计")


@pytest.mark.parametrize(
    ("case", "status", "text"),
    [
        ("missing", 400, "链接不完整。"),
        ("garbage", 400, "链接不完整。"),
        ("forged", 403, "链接无效。"),
        ("other_kind", 403, "链接无效。"),
        ("expired", 403, "链接已过期。"),
    ],
)
async def test_bad_links_get_a_localised_4xx(
    make_bot: MakeBot, case: str, status: int, text: str
) -> None:
    wechat, seeded, clock = await _bot(make_bot)
    good = _path(await wechat.say("o_A001", "统计"))
    token = good.split("t=", 1)[1]
    claims = {"p": seeded.ids["A001"], "u": "all", "l": "zh_CN"}
    path = {
        "missing": "/dashboard",
        "garbage": "/dashboard?t=not-a-token",
        "forged": "/dashboard?t="
        + LinkSigner("someone-else").sign("dashboard", claims, NOW, timedelta(minutes=15)),
        "other_kind": "/dashboard?t="
        + LinkSigner(DATA_KEY).sign("trace", claims, NOW, timedelta(minutes=15)),
        "expired": f"/dashboard?t={token}",
    }[case]
    if case == "expired":
        clock.advance(15 * 60 + 1)
    got, html = await _get(wechat, path)
    assert got == status
    assert text in html and "请在对话中发送“统计”获取新链接。" in html
    assert "Traceback" not in html
    got, html = await _get(wechat, path + ("&" if "?" in path else "?") + "lang=en")
    assert got == status and "Send dashboard in the chat for a new link." in html


async def test_each_view_is_audited_and_the_page_is_not_cached(make_bot: MakeBot) -> None:
    wechat, seeded, _clock = await _bot(make_bot)
    path = _path(await wechat.say("o_H001", "统计"))
    resp = await wechat.client.get(path)
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    async with wechat.client.app[K.SESSIONS]() as s:
        actions = (
            (
                await s.execute(
                    select(AuditEntry.action).where(
                        AuditEntry.actor == f"person:{seeded.ids['H001']}"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert actions.count("dashboard") == 1 and actions.count("read") == 3


async def test_a_refusal_speaks_the_browsers_language_when_the_link_says_nothing(
    make_bot: MakeBot,
) -> None:
    wechat, _seeded, _clock = await _bot(make_bot)
    resp = await wechat.client.get("/dashboard", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert resp.status == 400
    assert "This link is incomplete." in await resp.text()
    resp = await wechat.client.get("/dashboard?t=%00%ff", headers={"Accept-Language": "zh-CN"})
    assert resp.status == 400 and "链接不完整。" in await resp.text()


async def test_units_in_two_branches_start_from_your_units(make_bot: MakeBot) -> None:
    wechat, seeded, _clock = await _bot(make_bot)
    async with wechat.client.app[K.SESSIONS].begin() as s:
        s.add(UnitResponsible(unit_id=seeded.units["MED-2101"], person_no="F001"))
    status, html = await _get(wechat, _path(await wechat.say("o_F001", "统计")))
    assert status == 200
    assert re.search(r'id="crumbs">我的单位</div>', html)
    assert 'data-unit="CS-2101"' in html and 'data-unit="MED-2101"' in html
    assert _cell(html, "kpi-checkin") == f"{100 * 9 / 14:.1f}%"  # 7 of 10 and 2 of 4
