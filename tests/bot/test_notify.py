"""`通知 <unit> <text>` by chat: responsible persons only, their own units, each person once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from bot import appkeys as K
from campus.broadcast import plain_links
from storage.models import OutboxMessage, Person, Unit, UnitResponsible, WeChatAccount
from tests.bot.conftest import MakeBot
from tests.support import WeChat, event_xml, id_tail


async def _campus(wechat: WeChat) -> None:
    """T001 (English) is responsible for CS, which has a sub-unit CS1; MATH is someone else's."""
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        cs = (await s.execute(select(Unit).where(Unit.code == "CS"))).scalar_one()
        cs1 = Unit(code="CS1", name="CS Class 1", parent_id=cs.id)
        math = Unit(code="MATH", name="Mathematics")
        s.add_all([cs1, math])
        await s.flush()
        for no, unit in (("S101", cs1), ("M001", math)):
            s.add(
                Person(
                    person_no=no,
                    name=no,
                    category="student",
                    unit_id=unit.id,
                    id_hash=no,
                    id_cipher=b"x",
                    locale="zh_CN",
                )
            )
        await s.execute(
            update(Person).where(Person.person_no == "T001").values(roles="responsible")
        )
        s.add(UnitResponsible(unit_id=cs.id, person_no="T001"))


async def _outbox(wechat: WeChat) -> list[OutboxMessage]:
    async with wechat.client.app[K.SESSIONS]() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_a_responsible_person_notifies_their_unit_and_sub_units(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await _campus(wechat)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert "notify <unit code> <text>" in await wechat.say("o_t", "help")
    assert "通知" not in await wechat.say("o_s", "帮助")  # not listed for a student

    reply = await wechat.say("o_t", "notify CS Fire drill at 3 pm, meet at the east gate.")
    assert reply.startswith("Notice queued for Computer Science. Recipients: 4.")
    assert "Not bound to WeChat yet, so not reached: 2." in reply  # S002, S101
    rows = await _outbox(wechat)
    assert len(rows) == 4 and {r.kind for r in rows} == {"broadcast"}
    texts = {r.payload["text"] for r in rows}
    assert texts == {
        "【Computer Science通知】Fire drill at 3 pm, meet at the east gate.",
        "Notice from Computer Science: Fire drill at 3 pm, meet at the east gate.",
    }
    # A sub-unit by its own code works too; a case-insensitive command word as well.
    assert "CS Class 1. Recipients: 1." in await wechat.say("o_t", "NOTIFY CS1 Class meeting")


async def test_the_same_message_delivered_again_queues_nothing_new(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await _campus(wechat)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    first = await wechat.say("o_t", "notify CS hello", msg_id=4242)
    again = await wechat.say("o_t", "notify CS hello", msg_id=4242)  # WeChat's retry
    assert first == again
    assert len(await _outbox(wechat)) == 4


async def test_others_units_and_other_roles_are_refused(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await _campus(wechat)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    refused = await wechat.say("o_t", "notify MATH hello")
    assert "You are not responsible for a unit MATH." in refused
    assert "Your units: CS Computer Science" in refused
    assert "not responsible for a unit NOPE" in await wechat.say("o_t", "notify NOPE hi")
    assert "只有负责人可以发送通知" in await wechat.say("o_s", "通知 CS 你好")
    assert "只有负责人可以发送通知" in await wechat.say("o_stranger", "通知 CS 你好")
    usage = await wechat.say("o_t", "notify")
    assert "Send notify <unit code> <text>" in usage and "Your units: CS" in usage
    assert "at most 500 characters" in await wechat.say("o_t", "notify CS " + "x" * 501)
    assert await _outbox(wechat) == []


async def test_a_template_report_is_recorded_and_is_not_an_interaction(make_bot: MakeBot) -> None:
    """TEMPLATESENDJOBFINISH: routed to the outbox, answered `success`, last_seen untouched."""
    wechat = await make_bot()
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        person_id = (
            await s.execute(select(Person.id).where(Person.person_no == "S001"))
        ).scalar_one()
        s.add(
            OutboxMessage(
                person_id=person_id,
                kind="broadcast",
                payload={"text": "t"},
                idempotency_key="k",
                not_before=datetime.fromtimestamp(wechat.now(), UTC),
                state="sent",
                channel="template",
                template_msgid=987654321,
            )
        )
        account = (await s.execute(select(WeChatAccount))).scalar_one()
        seen = account.last_seen_at
    reply = await wechat.reply(
        event_xml("o_s", "TEMPLATESENDJOBFINISH", MsgID="987654321", Status="failed:user block")
    )
    assert reply is None  # success
    [row] = await _outbox(wechat)
    assert (row.state, row.receipt, row.last_error) == ("failed", "failed:user block", "user_block")
    async with sessions() as s:
        assert (await s.execute(select(WeChatAccount))).scalar_one().last_seen_at == seen
    # A report for a msgid the outbox never sent is answered and ignored.
    assert (
        await wechat.reply(event_xml("o_s", "TEMPLATESENDJOBFINISH", MsgID="1", Status="success"))
        is None
    )


async def test_a_link_in_a_notice_shows_where_it_goes(make_bot: MakeBot) -> None:
    """WeChat renders <a href> in text messages: a notice must not dress an address as
    something else, so the address is written out next to the link's text."""
    wechat = await make_bot()
    await _campus(wechat)
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    reply = await wechat.say(
        "o_t", 'notify CS Results: <a href="http://evil.example/login">school portal</a>'
    )
    assert reply.startswith("Notice queued for Computer Science.")
    texts = {r.payload["text"] for r in await _outbox(wechat)}
    assert texts == {
        "【Computer Science通知】Results: school portal (http://evil.example/login)",
        "Notice from Computer Science: Results: school portal (http://evil.example/login)",
    }


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("<A HREF='http://a.example'>T</A>", "T (http://a.example)"),
        (
            '<a\nclass=x href=http://c.example/e data-x="1">click <b>here</b></a>',
            "click here (http://c.example/e)",
        ),
        ('<a href="http://x.example">http://x.example</a>', "http://x.example"),
        ('<a href="http://x.example">unclosed', '＜a href="http://x.example">unclosed'),
        ('< a href="q">z</a>', '＜ a href="q">z</a>'),
        ('<a title="t">no address</a>', '＜a title="t">no address</a>'),
        ("a < b, <abbr>ok</abbr>", "a < b, <abbr>ok</abbr>"),
        # An address shown in another attribute is not the one written out.
        ('<a title="href=http://shown" href="http://evil">x</a>', "x (http://evil)"),
        ('<a data-href="http://shown" href="http://evil">x</a>', "x (http://evil)"),
        # Character references are read first; invisible characters do not hide a tag.
        ('&lt;a href="http://e"&gt;t&lt;/a&gt;', "t (http://e)"),
        ('&#60;a href="http://e">t</a>', "t (http://e)"),
        ('<\u200ba href="http://e">t</a>', '\uff1c\u200ba href="http://e">t</a>'),
    ],
)
def test_links_are_written_out_and_other_anchors_defused(text: str, plain: str) -> None:
    assert plain_links(text) == plain
