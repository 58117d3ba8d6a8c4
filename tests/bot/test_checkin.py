"""Check-in, status, overrides and warnings through the WeChat callback, in both languages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from bot import appkeys as K
from bot.clock import FrozenClock
from storage.models import HealthReport, HealthWarning, OutboxMessage, Person
from tests.bot.conftest import MakeBot
from tests.health_support import START, id_tail, seed
from tests.support import WeChat, event_xml

OPTION = re.compile(r'msgmenucontent=([^&]+)&msgmenuid=\d+">([^<]+)</a>')


def options(reply: str) -> dict[str, str]:
    """label -> what tapping it sends."""
    return {label: content for content, label in OPTION.findall(reply)}


async def campus_bot(make_bot: MakeBot) -> tuple[WeChat, FrozenClock]:
    clock = FrozenClock(START.timestamp())
    wechat = await make_bot(clock=clock, seed=False)
    await seed(wechat.client.app[K.SESSIONS], START - timedelta(days=30))
    return wechat, clock


async def bound(wechat: WeChat, openid: str, person_no: str, english: bool = False) -> None:
    if english:
        await wechat.say(openid, "English")
    reply = await wechat.say(openid, f"绑定 {person_no} {id_tail(person_no)}")
    assert "绑定成功" in reply or "Bound" in reply, reply


async def query(wechat: WeChat, stmt: Any) -> Any:
    async with wechat.client.app[K.SESSIONS]() as session:
        return (await session.execute(stmt)).all()


async def count_reports(wechat: WeChat) -> int:
    return (await query(wechat, select(func.count()).select_from(HealthReport)))[0][0]


async def test_the_whole_check_in_in_chinese_by_taps(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    first = await wechat.say("o_s1", "打卡")
    assert "体温" in first and "取消" in options(first)
    symptoms = await wechat.say("o_s1", "37.6")
    taps = options(symptoms)
    assert {
        "无",
        "发热",
        "咳嗽",
        "咽痛",
        "乏力",
        "嗅觉或味觉减退",
        "腹泻",
        "其他症状",
        "完成",
    } <= set(taps)
    picked = await wechat.say("o_s1", taps["咳嗽"])
    assert "已选症状：咳嗽" in picked and "✓ 咳嗽" in options(picked)
    picked = await wechat.say("o_s1", options(picked)["乏力"])
    assert "咳嗽、乏力" in picked
    where = await wechat.say("o_s1", options(picked)["完成"])
    assert set(options(where)) == {"在校", "在本市", "外地"}
    region = await wechat.say("o_s1", "外地")
    assert "城市" in region
    exposure = await wechat.say("o_s1", "武汉")
    assert set(options(exposure)) == {"都没有", "接触过病例", "来自风险地区", "两者都有"}
    done = await wechat.say("o_s1", options(exposure)["都没有"])
    assert "健康打卡成功" in done and "37.6 °C，咳嗽、乏力，外地（武汉）" in done
    assert "红码" in done and "原为绿码" in done
    assert "体温 37.6°C，伴有咳嗽、乏力" in done
    assert "14 天" in done and "防疫专员" in done


async def test_the_whole_check_in_in_english(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_t1", "T001")
    assert "temperature" in await wechat.say("o_t1", "checkin")
    assert "Any symptoms" in await wechat.say("o_t1", "36.4")
    assert "Where are you" in await wechat.say("o_t1", "None")
    assert "contact with a confirmed case" in await wechat.say("o_t1", "on campus")
    done = await wechat.say("o_t1", "neither")
    assert "36.4 °C, no symptoms, on campus" in done and "Green" in done
    status = await wechat.say("o_t1", "status")
    assert "Your health status: 🟢 Green" in status and "Today's report: 36.4 °C" in status


async def test_quick_check_in_and_same_as_yesterday_by_one_tap(make_bot: MakeBot) -> None:
    wechat, clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    quick = await wechat.say("o_s1", "打卡 36.7")
    assert "36.7 °C，无症状，在校" in quick and "绿码" in quick
    clock.advance(24 * 3600)
    ask = await wechat.say("o_s1", "打卡")
    assert "沿用昨天" in ask
    same = await wechat.say("o_s1", options(ask)["同昨天"])
    assert "36.7 °C" in same and "健康打卡成功" in same
    assert await count_reports(wechat) == 2
    assert "36.5 °C" in await wechat.say("o_s1", "checkin 36,5")  # replaces today's
    with_cough = await wechat.say("o_s1", "打卡 37.5 咳嗽")
    assert "37.5 °C，咳嗽" in with_cough and "红码" in with_cough


async def test_bad_answers_change_nothing(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    assert "34.0–43.0" in await wechat.say("o_s1", "打卡 45.2")
    assert "34.0–43.0" in await wechat.say("o_s1", "打卡 ３３")
    assert "无法把“热”识别为体温" in await wechat.say("o_s1", "打卡 热")
    assert "无法" in await wechat.say("o_s1", "打卡 36.5 打喷嚏")
    await wechat.say("o_s1", "打卡")
    assert "34.0–43.0" in await wechat.say("o_s1", "99")
    assert "无法" in await wechat.say("o_s1", "<b>]]>")
    assert "症状" in await wechat.say("o_s1", "36.5")  # the step was kept
    assert "点选" in await wechat.say("o_s1", "打喷嚏")
    assert "已取消" in await wechat.say("o_s1", "取消")
    assert await count_reports(wechat) == 0
    status = await wechat.say("o_s1", "状态")
    assert "绿码" in status and "还没有打卡" in status


async def test_unbound_users_are_sent_to_bind(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    for text in ("打卡 36.5", "打卡", "状态", "收到", "设置状态 S001 red test"):
        reply = await wechat.say("o_stranger", text)
        assert "绑定" in reply or "防疫专员" in reply, reply
        assert "张三丰" not in reply and "S001" not in reply
    status, body = await wechat.post(event_xml("o_stranger", "CLICK", "MY_STATUS"))
    assert status == 200 and "绑定" in body and "绿码" not in body
    assert await count_reports(wechat) == 0


async def test_the_menu_buttons(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    reply = await wechat.reply(event_xml("o_s1", "CLICK", "CHECKIN"))
    assert reply is not None and "体温" in reply["Content"]
    await wechat.say("o_s1", "取消")
    await wechat.say("o_s1", "打卡 38.2")
    reply = await wechat.reply(event_xml("o_s1", "CLICK", "MY_STATUS"))
    assert reply is not None
    text = reply["Content"]
    assert "黄码" in text and "体温 38.2°C" in text and "还需连续正常打卡 7 天" in text


async def test_a_warning_reaches_the_counsellor_who_acknowledges_it(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    await bound(wechat, "o_f1", "F001")
    await bound(wechat, "o_s2", "S002")
    await wechat.say("o_s1", "打卡 38.0")
    rows = await query(
        wechat,
        select(Person.person_no, OutboxMessage.payload)
        .join(Person, Person.id == OutboxMessage.person_id)
        .where(OutboxMessage.kind == "health_warning"),
    )
    assert [r[0] for r in rows] == ["F001"]
    push = rows[0][1]["text"]
    assert "健康预警" in push and "张*丰" in push and "38.0" in push
    tap = options(push)["确认收到"]
    assert await wechat.say("o_s2", tap) == "没有等待你确认的预警。"  # not theirs
    assert "已确认 1 条预警" in await wechat.say("o_f1", tap)
    acked = await query(wechat, select(HealthWarning.acked_at))
    assert acked[0][0] is not None
    # mid-conversation too: 收到 works whatever the step
    await wechat.say("o_f1", "打卡")
    assert "没有等待" in await wechat.say("o_f1", "收到")


async def test_only_health_officers_set_a_status(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_s1", "S001")
    await bound(wechat, "o_f1", "F001")
    await bound(wechat, "o_h1", "H001")
    for openid in ("o_s1", "o_f1"):
        assert "只有防疫专员" in await wechat.say(openid, "设置状态 S001 red 密接")
        assert "设置状态" not in await wechat.say(openid, "帮助")
    assert "设置状态 <学工号>" in await wechat.say("o_h1", "帮助")
    assert "请发送 设置状态" in await wechat.say("o_h1", "设置状态 S001 purple 密接")
    assert "请发送 设置状态" in await wechat.say("o_h1", "设置状态 S001 red")
    assert "没有学工号为 NOPE" in await wechat.say("o_h1", "设置状态 NOPE red 密接")
    done = await wechat.say("o_h1", "设置状态 s001 红码 密切接触者")
    assert "张三丰（S001）" in done and "🟢 绿码 → 🔴 红码" in done
    status = await wechat.say("o_s1", "状态")
    assert "红码" in status and "由防疫专员设定：密切接触者" in status
    told = await query(
        wechat, select(OutboxMessage.payload).where(OutboxMessage.kind == "status_override")
    )
    assert "红码" in told[0][0]["text"]
    assert "绿码" in await wechat.say("o_h1", "设置状态 S001 green 核酸阴性")
    assert "绿码" in await wechat.say("o_s1", "状态")


async def test_an_english_officer_and_help(make_bot: MakeBot) -> None:
    wechat, _clock = await campus_bot(make_bot)
    await bound(wechat, "o_f4", "F004", english=True)
    helped = await wechat.say("o_f4", "help")
    assert "ack — acknowledge the health warnings" in helped
    assert "setstatus" not in helped
    assert "No warnings are waiting" in await wechat.say("o_f4", "ack")
    assert "Only health officers" in await wechat.say("o_f4", "setstatus S001 red x")
