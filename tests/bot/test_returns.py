"""`返校`/`return` through the callback (issue 8): apply, approve by chat, arrive at the gate."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from bot import appkeys as K
from bot.clock import FrozenClock
from campus.access.passes import IssuedPass
from campus.registry.importer import import_rows
from storage.models import HealthReport, OutboxMessage, Person, Unit, UnitResponsible
from storage.models_returns import ReturnApplication
from tests.access_support import GUARD_ID, person_id, seed_places
from tests.bot.conftest import MakeBot
from tests.support import WeChat, event_xml, id_tail, resident_id

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)
TODAY = NOON.astimezone(TZ).date()
STUDENT, OTHER, COUNSELLOR, DEAN, GUARD = "o_s1", "o_s2", "o_t1", "o_d1", "o_g1"
DEAN_ID = resident_id("11010519700101999")
_ticks = itertools.count(1)


async def _campus(make_bot: MakeBot) -> tuple[WeChat, FrozenClock]:
    """CS (counsellor T001) under the college COL (dean D001); a batch G1; S001 has checked in
    for two weeks, S002 not at all."""
    clock = FrozenClock(NOON.timestamp())
    wechat = await make_bot(clock=clock)
    app = wechat.client.app
    sessions, vault = app[K.SESSIONS], app[K.SERVICES]["vault"]
    await seed_places(sessions, vault)
    async with sessions.begin() as s:
        col = Unit(code="COL", name="College")
        s.add(col)
        await s.flush()
        await s.execute(update(Unit).where(Unit.code == "CS").values(parent_id=col.id))
        cs = await s.scalar(select(Unit.id).where(Unit.code == "CS"))
        assert cs is not None
        s.add_all(
            [
                UnitResponsible(unit_id=cs, person_no="T001"),
                UnitResponsible(unit_id=col.id, person_no="D001"),
                Person(
                    person_no="D001",
                    name="刘院长",
                    category="faculty",
                    unit_id=col.id,
                    roles="responsible",
                    id_hash=vault.lookup_hash(DEAN_ID, "id"),
                    id_cipher=vault.encrypt(DEAN_ID),
                ),
            ]
        )
        await s.execute(
            update(Person).where(Person.person_no == "T001").values(roles="responsible")
        )
        s1 = await s.scalar(select(Person.id).where(Person.person_no == "S001"))
        for back in range(1, 15):
            s.add(
                HealthReport(
                    person_id=s1,
                    day=TODAY - timedelta(days=back),
                    temperature=365,
                    submitted_at=NOON - timedelta(days=back),
                )
            )
    row = {
        "code": "G1",
        "name": "毕业生 Graduates",
        "kind": "graduate",
        "unit_codes": "COL",
        "arrive_from": str(TODAY - timedelta(days=1)),
        "arrive_to": str(TODAY + timedelta(days=5)),
        "daily_quota": "50",
    }
    assert (await import_rows(sessions, vault, "batches", [(2, row)])).ok
    assert "绑定成功" in await wechat.say(STUDENT, f"绑定 S001 {id_tail('S001')}")
    assert "绑定成功" in await wechat.say(OTHER, f"绑定 S002 {id_tail('S002')}")
    assert "Bound" in await wechat.say(COUNSELLOR, f"bind T001 {id_tail('T001')}")
    assert "绑定成功" in await wechat.say(DEAN, f"绑定 D001 {DEAN_ID[-6:]}")
    assert "绑定成功" in await wechat.say(GUARD, f"绑定 G001 {GUARD_ID[-6:]}")
    return wechat, clock


async def _pushes(wechat: WeChat, person_no: str, kind: str) -> list[str]:
    sessions = wechat.client.app[K.SESSIONS]
    pid = await person_id(sessions, person_no)
    async with sessions() as s:
        rows = (
            await s.execute(
                select(OutboxMessage)
                .where(OutboxMessage.person_id == pid, OutboxMessage.kind == kind)
                .order_by(OutboxMessage.id)
            )
        ).scalars()
        return [r.payload["text"] for r in rows]


def _taps(text: str) -> list[str]:
    return re.findall(r"msgmenucontent=([^&]*)&", text)


async def _apply(wechat: WeChat, day: date) -> str:
    reply = await wechat.say(STUDENT, "返校")
    assert "哪个批次" in reply and _taps(reply) == ["G1"]
    reply = await wechat.say(STUDENT, "G1")
    assert "哪天到校" in reply and str(TODAY) in _taps(reply)
    assert str(TODAY - timedelta(days=1)) not in _taps(reply)  # past days are not offered
    reply = await wechat.say(STUDENT, str(day))
    assert _taps(reply) == ["train", "flight", "car", "other"]
    assert "车次" in await wechat.say(STUDENT, "train")
    assert "格式不对" in await wechat.say(STUDENT, "<b>")
    assert "从哪里出发" in await wechat.say(STUDENT, "g 1234")
    reply = await wechat.say(STUDENT, "湖北省武汉市")
    assert "请核对" in reply and "G1234" in reply and str(day) in reply and "火车" in reply
    return await wechat.say(STUDENT, "确认")


async def _scan(wechat: WeChat, person_no: str) -> str:
    app = wechat.client.app
    passes = app[K.SERVICES]["passes"]
    holder = await passes.holder(await person_id(app[K.SESSIONS], person_no))
    issued = await passes.issue(holder, TODAY)
    assert isinstance(issued, IssuedPass)
    reply = await wechat.reply(
        event_xml(
            GUARD,
            "scancode_waitmsg",
            "VERIFY",
            create_time=int(wechat.now()) + next(_ticks),
            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": issued.token},
        )
    )
    return "" if reply is None else str(reply.get("Content", ""))


async def test_apply_approve_by_chat_and_arrive_at_the_gate(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    day = TODAY + timedelta(days=1)
    submitted = await _apply(wechat, day)
    assert "已提交：申请 A1" in submitted

    # The counsellor (English) gets the masked summary with taps, and sees it as pending.
    (ask,) = await _pushes(wechat, "T001", "return_approval")
    assert "A1" in ask and "张*" in ask and "张三" not in ask and "step 1 of 2" in ask
    assert _taps(ask) == ["approve A1", "reject A1"]
    pending = await wechat.say(COUNSELLOR, "pending")
    assert "waiting for you: 1" in pending and "approve A1" in _taps(pending)
    assert "goes on to the next step" in await wechat.say(COUNSELLOR, "approve A1")
    assert "已通过第 1 步（班级）" in (await _pushes(wechat, "S001", "return_progress"))[-1]

    # While pending, the student sees the state and may change or withdraw it.
    status = await wechat.say(STUDENT, "返校")
    assert "待审批" in status and "第 2/2 步" in status and "返校 撤回" in _taps(status)

    # The dean approves by typing.
    (dean_ask,) = await _pushes(wechat, "D001", "return_approval")
    assert "同意 A1" in _taps(dean_ask)
    assert "已通过 A1" in await wechat.say(DEAN, "同意 A1")
    assert "已通过" in (await _pushes(wechat, "S001", "return_decided"))[0]
    assert "没有待你审批" in await wechat.say(DEAN, "待审批")

    # At the gate, a day early (within ±1): the arrival is recorded.
    assert "已在" in await wechat.say(GUARD, "上岗 GATE-N")
    reply = await _scan(wechat, "S001")
    assert reply.startswith("✅") and "返校：已登记到校" in reply and "张*" in reply
    assert any("欢迎返校" in t for t in await _pushes(wechat, "S001", "return_arrived"))
    assert len(await _pushes(wechat, "T001", "return_arrived")) == 1
    async with wechat.client.app[K.SESSIONS]() as s:
        person = await s.scalar(select(Person).where(Person.person_no == "S001"))
        assert person is not None and person.returned_at is not None
    assert "已经返校" in await wechat.say(STUDENT, "返校")


async def test_too_early_at_the_gate_and_a_rejection_with_its_reason(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    await _apply(wechat, TODAY + timedelta(days=4))
    await wechat.say(GUARD, "上岗 GATE-N")
    reply = await _scan(wechat, "S001")
    assert reply.startswith("⛔") and "尚未通过审批" in reply
    # The counsellor taps reject, then says why.
    asked = await wechat.say(COUNSELLOR, "reject A1")
    assert "Why is application A1 rejected" in asked
    assert "Rejected A1" in await wechat.say(COUNSELLOR, "itinerary incomplete")
    (told,) = await _pushes(wechat, "S001", "return_decided")
    assert "未通过" in told and "itinerary incomplete" in told
    # A rejected application can be seen; a new one may follow.
    reply = await wechat.say(STUDENT, "返校")
    assert "未通过" in reply and "哪个批次" in reply
    await wechat.say(STUDENT, "取消")


async def test_ineligible_students_are_told_why(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    reply = await wechat.say(OTHER, "返校")
    assert "暂时还不能申请返校" in reply and "连续打卡 14 天" in reply and "已连续 0 天" in reply
    assert "只有学生" in await wechat.say(DEAN, "返校")
    assert "请先绑定" in await wechat.say("o_nobody", "return")


async def test_withdraw_by_tap_and_approve_words_of_registrations(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    await _apply(wechat, TODAY + timedelta(days=2))
    assert "已撤回" in await wechat.say(STUDENT, "返校 撤回")
    async with wechat.client.app[K.SESSIONS]() as s:
        (app,) = (await s.execute(select(ReturnApplication))).scalars()
    assert app.state == "withdrawn"
    assert "No application A1" in await wechat.say(COUNSELLOR, "approve A1")
    # A bare number with the English word is a registration's, as before.
    assert "no registration waiting" in await wechat.say(COUNSELLOR, "approve 12")
    assert "no registration waiting" in await wechat.say(COUNSELLOR, "reject 12")
    # Someone the application never went to.
    await _apply(wechat, TODAY + timedelta(days=2))
    assert "不在你的待审批" in await wechat.say(DEAN, "同意 A2")
    assert "A12" in await wechat.say(DEAN, "同意")
    assert "<b>" not in await wechat.say(COUNSELLOR, "reject A2 <b>bad</b>")


async def test_the_menu_key_and_help(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    reply: Any = await wechat.reply(event_xml(STUDENT, "CLICK", "RETURN"))
    assert reply is not None and "哪个批次" in reply["Content"]
    await wechat.say(STUDENT, "取消")
    student_help = await wechat.say(STUDENT, "帮助")
    assert "返校" in student_help and "待审批" not in student_help
    counsellor_help = await wechat.say(COUNSELLOR, "help")
    assert "pending" in counsellor_help and "approve A<application no.>" in counsellor_help


async def test_a_student_unbound_mid_application_is_asked_to_bind(make_bot: MakeBot) -> None:
    wechat, _clock = await _campus(make_bot)
    assert "G1" in await wechat.say(STUDENT, "返校")  # at the batch step
    async with wechat.client.app[K.SESSIONS].begin() as s:
        from storage.models import WeChatAccount

        await s.execute(
            update(WeChatAccount).where(WeChatAccount.openid == STUDENT).values(person_id=None)
        )
    await wechat.client.app[K.SERVICES]["accounts"].forget(STUDENT)
    reply = await wechat.say(STUDENT, "G1")
    assert "绑定" in reply and "出了点问题" not in reply
    assert "没有看懂" in await wechat.say(STUDENT, "G1")  # the application step is gone


async def test_a_rejection_from_someone_not_asked_is_refused_before_any_reason(
    make_bot: MakeBot,
) -> None:
    wechat, _clock = await _campus(make_bot)
    assert "已提交：申请 A1" in await _apply(wechat, TODAY + timedelta(days=1))
    # The dean is asked only at step 2: refused at once, never asked why.
    assert await wechat.say(DEAN, "驳回 A1") == "申请 A1 不在你的待审批列表中。"
    assert "没有看懂" in await wechat.say(DEAN, "随便什么理由")  # no reason step was opened
    # The counsellor, who is asked, is asked for the reason.
    assert "reason" in (await wechat.say(COUNSELLOR, "reject A1")).lower()
