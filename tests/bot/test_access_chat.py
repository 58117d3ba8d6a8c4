"""Pass codes, guards and place check-ins through the callback (issue 7)."""

from __future__ import annotations

import asyncio
import base64
import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select

from bot import appkeys as K
from bot.clock import FrozenClock
from bot.kv import KV
from campus.access import passes as access_passes
from storage.models import AccessRecord
from tests.access_support import GUARD_ID, decode_qr, person_id, seed_places, set_person
from tests.bot.conftest import MakeBot
from tests.support import FakeWeChatAPI, WeChat, event_xml, id_tail

STUDENT, GUARD, STAFF = "o_student", "o_guard", "o_staff"


async def _campus(make_bot: MakeBot, **overrides: Any) -> WeChat:
    wechat = await make_bot(**overrides)
    app = wechat.client.app
    await seed_places(app[K.SESSIONS], app[K.SERVICES]["vault"])
    assert "绑定成功" in await wechat.say(STUDENT, f"绑定 S001 {id_tail('S001')}")
    assert "绑定成功" in await wechat.say(GUARD, f"绑定 G001 {GUARD_ID[-6:]}")
    assert "Bound" in await wechat.say(STAFF, f"bind T001 {id_tail('T001')}")
    return wechat


def _sessions(wechat: WeChat) -> Any:
    return wechat.client.app[K.SESSIONS]


async def _code(wechat: WeChat, fake_api: FakeWeChatAPI, openid: str) -> tuple[str, dict[str, Any]]:
    """Ask for the pass code; (the token read back from the uploaded PNG, the reply)."""
    reply = await wechat.reply(event_xml(openid, "CLICK", "MY_CODE"))
    assert reply is not None and reply["MsgType"] == "image", reply
    media_id = reply["Image"]["MediaId"]
    png = fake_api.uploads[int(media_id.removeprefix("MEDIA")) - 1]
    token = decode_qr(png)
    assert token is not None and token.startswith("HC1.")
    return token, reply


_ticks = itertools.count(1)


async def _scan(wechat: WeChat, openid: str, text: str) -> str:
    # WeChat dedups events by sender + CreateTime: a guard's scans are seconds apart.
    reply = await wechat.reply(
        event_xml(
            openid,
            "scancode_waitmsg",
            "VERIFY",
            create_time=int(wechat.now()) + next(_ticks),
            ScanCodeInfo={"ScanType": "qrcode", "ScanResult": text},
        )
    )
    return "" if reply is None else str(reply.get("Content", ""))


async def _records(wechat: WeChat) -> list[AccessRecord]:
    await wechat.client.app[K.SERVICES]["access"].flushed()  # written behind
    async with _sessions(wechat)() as s:
        return list((await s.execute(select(AccessRecord).order_by(AccessRecord.id))).scalars())


async def _follow_ups(fake_api: FakeWeChatAPI, count: int) -> list[dict[str, Any]]:
    for _ in range(100):
        if len(fake_api.sent) >= count:
            break
        await asyncio.sleep(0.02)
    return fake_api.sent


async def test_the_code_is_an_image_then_a_line_and_is_reused_while_valid(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    token, _ = await _code(wechat, fake_api, STUDENT)
    sent = await _follow_ups(fake_api, 1)
    line = sent[-1]["text"]["content"]
    assert sent[-1]["touser"] == STUDENT
    assert "张*" in line and "绿码" in line and "有效至" in line and "张三" not in line
    # Asking again (keyword this time) reuses the upload and the code.
    reply = await wechat.reply(
        event_xml(STUDENT, "CLICK", "MY_CODE", create_time=int(wechat.now()) + 1)
    )
    assert reply is not None and reply["Image"]["MediaId"] == "MEDIA1"
    assert len(fake_api.uploads) == 1
    english, _ = await _code(wechat, fake_api, STAFF)
    assert english != token


async def test_a_status_change_makes_a_new_code(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    first, _ = await _code(wechat, fake_api, STUDENT)
    await set_person(_sessions(wechat), "S001", status="yellow")
    reply = await wechat.reply(
        event_xml(STUDENT, "CLICK", "MY_CODE", create_time=int(wechat.now()) + 1)
    )
    assert reply is not None and reply["Image"]["MediaId"] == "MEDIA2"
    second = decode_qr(fake_api.uploads[1])
    assert second is not None and second != first
    sent = await _follow_ups(fake_api, 2)
    assert "黄码" in sent[-1]["text"]["content"]


async def test_no_code_for_unbound_left_expired_or_pending(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    assert "绑定" in await wechat.say("o_nobody", "健康码")
    await set_person(_sessions(wechat), "S001", state="left")
    assert "失效" in await wechat.say(STUDENT, "健康码")
    await set_person(_sessions(wechat), "S001", state="active", valid_until=date(2000, 1, 1))
    assert "失效" in await wechat.say(STUDENT, "code")
    await set_person(_sessions(wechat), "S001", state="pending", valid_until=None)
    assert "等待确认" in await wechat.say(STUDENT, "健康码")
    assert fake_api.uploads == []


async def test_an_upload_failure_is_an_apology(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    fake_api.fail_uploads = True
    assert "暂时无法生成" in await wechat.say(STUDENT, "健康码")


async def test_a_guard_on_duty_scans_and_every_scan_is_recorded(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    token, _ = await _code(wechat, fake_api, STUDENT)
    assert "上岗" in await wechat.say(GUARD, "上岗 GATE-N")
    reply = await _scan(wechat, GUARD, token)
    lines = reply.splitlines()
    assert lines[0].startswith("✅")
    assert lines[1] == "张* · 学生 · Computer Science"
    assert "北门" in lines[-1]
    assert "绿" not in reply and "张三" not in reply
    # 出 makes the next scan (only) an exit.
    assert "离开" in await wechat.say(GUARD, "出")
    exit_reply = await _scan(wechat, GUARD, token)
    assert exit_reply.startswith("✅") and "离开" in exit_reply.splitlines()[0]
    third = await _scan(wechat, GUARD, token)
    assert "进入" in third.splitlines()[0]
    records = await _records(wechat)
    student, guard = (
        await person_id(_sessions(wechat), "S001"),
        await person_id(_sessions(wechat), "G001"),
    )
    assert [(r.person_id, r.direction, r.allowed, r.method, r.verifier_id) for r in records] == [
        (student, "in", True, "guard", guard),
        (student, "out", True, "guard", guard),
        (student, "in", True, "guard", guard),
    ]
    assert "下岗" in await wechat.say(GUARD, "下岗")
    assert "不在岗" in await _scan(wechat, GUARD, token)
    assert len(await _records(wechat)) == 3


async def test_a_code_issued_green_is_refused_once_the_person_turned_yellow(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    token, _ = await _code(wechat, fake_api, STUDENT)
    await wechat.say(GUARD, "上岗 GATE-N")
    await set_person(_sessions(wechat), "S001", status="yellow")
    reply = await _scan(wechat, GUARD, token)
    assert reply.startswith("⛔")
    assert "健康状态不允许通行" in reply
    assert "黄" not in reply and "yellow" not in reply.lower()  # no health details for guards
    assert "张*" in reply
    (record,) = await _records(wechat)
    assert not record.allowed and record.reason == "status"


async def test_expired_and_forged_codes(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    clock = FrozenClock(datetime(2026, 11, 26, 2, 0, tzinfo=UTC).timestamp())
    wechat = await _campus(make_bot, clock=clock)
    token, _ = await _code(wechat, fake_api, STUDENT)
    await wechat.say(GUARD, "上岗 GATE-N")
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    reply = await _scan(wechat, GUARD, forged)
    assert reply.startswith("⛔") and "不是本校有效的通行码" in reply and "张" not in reply
    assert "不是本校有效的通行码" in await _scan(wechat, GUARD, "hello")
    clock.advance(601)
    reply = await _scan(wechat, GUARD, token)
    assert reply.startswith("⛔") and "过期" in reply and "张" not in reply
    records = await _records(wechat)
    assert [(r.person_id, r.reason) for r in records] == [
        (None, "invalid_code"),
        (None, "invalid_code"),
        (None, "expired_code"),
    ]


async def test_scans_by_non_guards_or_guards_off_duty_reveal_nothing(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    token, _ = await _code(wechat, fake_api, STUDENT)
    for openid in (STUDENT, STAFF, "o_stranger"):
        reply = await _scan(wechat, openid, token)
        assert not reply.startswith(("✅", "⛔")) and "张" not in reply and "Z" not in reply
    assert "Only guards" in await _scan(wechat, STAFF, token)
    assert "不在岗" in await _scan(wechat, GUARD, token)
    assert "只有门岗" in await wechat.say(STUDENT, "上岗 GATE-N")
    assert await _records(wechat) == []


async def test_on_duty_needs_a_known_place(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    assert "场所编码" in await wechat.say(GUARD, "上岗")
    assert "没有编码为 NOPE" in await wechat.say(GUARD, "上岗 NOPE")
    assert "不在岗" in await wechat.say(GUARD, "下岗")
    reply = await wechat.say(GUARD, "上岗 gate-n")
    assert "北门" in reply and "12" in reply
    assert "已在北门 North Gate下岗" in await wechat.say(GUARD, "下岗")


async def test_going_on_duty_tags_the_guard_for_the_scanner_menu(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    fake_api.tags = {"门岗 guards": 101}
    wechat = await _campus(make_bot)
    await wechat.say(GUARD, "上岗 GATE-N")
    assert fake_api.tagged == {101: {GUARD}}


async def test_policies_at_the_gate(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    student, _ = await _code(wechat, fake_api, STUDENT)
    staff, _ = await _code(wechat, fake_api, STAFF)
    await wechat.say(GUARD, "上岗 LAB-1")
    assert "不对此类人员开放" in await _scan(wechat, GUARD, student)
    assert (await _scan(wechat, GUARD, staff)).startswith("✅")
    await wechat.say(GUARD, "上岗 DORM-1")
    assert (await _scan(wechat, GUARD, student)).startswith("✅")
    reply = await _scan(wechat, GUARD, staff)
    assert "非本处住户" in reply and "J*** S****" in reply and "职工" in reply


async def test_self_check_in_by_poster_scan(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    reply = await wechat.reply(event_xml(STUDENT, "SCAN", "place:LIB", Ticket="T"))
    assert reply is not None
    text = reply["Content"]
    assert text.startswith("⛔") and "Library" in text and "尚未确认返校" in text
    await set_person(_sessions(wechat), "S001", returned_at=datetime.now(UTC) - timedelta(days=1))
    reply = await wechat.reply(event_xml(STUDENT, "SCAN", "place:LIB", int(wechat.now()) + 1))
    assert reply is not None and reply["Content"].startswith("✅")
    # Self check-out: 出, then the poster.
    await wechat.say(STUDENT, "出")
    reply = await wechat.reply(event_xml(STUDENT, "SCAN", "place:LIB", int(wechat.now()) + 2))
    assert reply is not None and reply["Content"].startswith("✅") and "离开" in reply["Content"]
    await set_person(_sessions(wechat), "S001", status="red")
    reply = await wechat.reply(event_xml(STUDENT, "SCAN", "place:LIB", int(wechat.now()) + 3))
    assert reply is not None and "红码" in reply["Content"]  # the person's own status, named
    records = await _records(wechat)
    assert [(r.direction, r.allowed, r.reason, r.method, r.verifier_id) for r in records] == [
        ("in", False, "not_returned", "self", None),
        ("in", True, "", "self", None),
        ("out", True, "", "self", None),
        ("in", False, "status", "self", None),
    ]


async def test_a_guard_scanning_a_gate_poster_goes_on_duty(
    make_bot: MakeBot, fake_api: FakeWeChatAPI
) -> None:
    wechat = await _campus(make_bot)
    reply = await wechat.reply(event_xml(GUARD, "SCAN", "place:GATE-N"))
    assert reply is not None and "上岗" in reply["Content"]
    token, _ = await _code(wechat, fake_api, STUDENT)
    assert (await _scan(wechat, GUARD, token)).startswith("✅")


async def test_new_followers_from_a_poster(make_bot: MakeBot, fake_api: FakeWeChatAPI) -> None:
    wechat = await _campus(make_bot)
    reply = await wechat.reply(event_xml("o_new", "subscribe", "qrscene_place:LIB", Ticket="T"))
    assert reply is not None
    assert "请先绑定" in reply["Content"] and "msgmenucontent=绑定" in reply["Content"]
    plain = await wechat.reply(event_xml("o_new2", "subscribe", ""))
    assert plain is not None and "欢迎" in plain["Content"]
    other = await wechat.reply(event_xml(STUDENT, "SCAN", "campaign:42"))
    assert other is None
    unknown = await wechat.reply(event_xml(STUDENT, "SCAN", "place:NOPE"))
    assert unknown is not None and "无法识别" in unknown["Content"]
    assert await _records(wechat) == []


async def test_help_lists_the_access_commands_by_role(make_bot: MakeBot) -> None:
    wechat = await _campus(make_bot)
    guard_help = await wechat.say(GUARD, "帮助")
    student_help = await wechat.say(STUDENT, "帮助")
    assert "上岗" in guard_help and "下岗" in guard_help and "健康码" in guard_help
    assert "健康码" in student_help and "出 " in student_help
    assert "上岗" not in student_help and "下岗" not in student_help


async def test_duty_and_exit_live_in_either_state_store(
    make_bot: MakeBot, fake_api: FakeWeChatAPI, kv: KV
) -> None:
    wechat = await _campus(make_bot, kv=kv)
    token, _ = await _code(wechat, fake_api, STUDENT)
    await wechat.say(GUARD, "上岗 GATE-N")
    await wechat.say(GUARD, "出")
    assert "离开" in (await _scan(wechat, GUARD, token)).splitlines()[0]
    assert "进入" in (await _scan(wechat, GUARD, token)).splitlines()[0]
    # The card's media id is kept there too.
    again = await wechat.reply(event_xml(STUDENT, "CLICK", "MY_CODE", int(wechat.now()) + 9))
    assert again is not None and again["Image"]["MediaId"] == "MEDIA1"


async def test_a_guard_recognises_a_code_the_chat_issued_by_its_record(
    make_bot: MakeBot, fake_api: FakeWeChatAPI, kv: KV, monkeypatch: Any
) -> None:
    """The code asked for in the chat is on record in the state store; the guard's scan
    reads the record with the guard's post and makes no signature check. Without the
    record the signature decides (campus/access/issued.py)."""
    wechat = await _campus(make_bot, kv=kv)
    token, _ = await _code(wechat, fake_api, STUDENT)
    passes = wechat.client.app[K.SERVICES]["passes"]
    key = passes.record_key(token)
    assert (
        key is not None
        and await kv.get(key) == str(await person_id(_sessions(wechat), "S001")).encode()
    )
    await wechat.say(GUARD, "上岗 GATE-N")
    checks: list[str] = []
    real = access_passes.check_signature

    def counted(*args: Any) -> None:
        checks.append("signature")
        real(*args)

    monkeypatch.setattr(access_passes, "check_signature", counted)
    assert (await _scan(wechat, GUARD, token)).startswith("✅")
    assert checks == []
    await kv.delete(key)
    assert (await _scan(wechat, GUARD, token)).startswith("✅")
    assert checks == ["signature"]
    raw = bytearray(base64.urlsafe_b64decode(token[4:] + "=="))
    raw[-1] ^= 1  # the signature's last byte: a well-formed code, not this campus's
    tampered = "HC1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert passes.record_key(tampered) is not None
    assert (await _scan(wechat, GUARD, tampered)).startswith("⛔")
    assert checks == ["signature", "signature"]
