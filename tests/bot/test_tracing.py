"""`追踪`/`trace` and `事件`/`incident` by chat (issue 10): health officers only, masked
names in chat, the full list behind a signed link that expires, every read audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape

from sqlalchemy import select, update

from bot import appkeys as K
from bot.clock import FrozenClock
from storage.models import AccessRecord, AuditEntry, OutboxMessage, Person, Place
from tests.bot.conftest import MakeBot
from tests.support import WeChat, id_tail

NOW = datetime(2026, 11, 26, 6, 0, tzinfo=UTC)
OFFICER, STUDENT, OTHER = "o_officer", "o_student", "o_other"


async def _campus(wechat: WeChat) -> None:
    """T001 (English) is a health officer. S001 and S002 shared the library yesterday."""
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        await s.execute(
            update(Person).where(Person.person_no == "T001").values(roles="health_officer")
        )
        lib = Place(code="LIB", name="Library <main>", kind="library", policy="open")
        s.add(lib)
        await s.flush()
        ids = dict((await s.execute(select(Person.person_no, Person.id))).all())
        start = NOW - timedelta(days=1)
        for no, begin, end in [("S001", 0, 60), ("S002", 30, 90)]:
            for direction, minutes in (("in", begin), ("out", end)):
                s.add(
                    AccessRecord(
                        person_id=ids[no],
                        place_id=lib.id,
                        direction=direction,
                        at=start + timedelta(minutes=minutes),
                        allowed=True,
                        reason="",
                        method="self",
                    )
                )
    await wechat.say(OFFICER, f"bind T001 {id_tail('T001')}")
    await wechat.say(STUDENT, f"绑定 S001 {id_tail('S001')}")


async def _bot(make_bot: MakeBot) -> tuple[WeChat, FrozenClock]:
    clock = FrozenClock(NOW.timestamp())
    wechat = await make_bot(clock=clock)
    await _campus(wechat)
    return wechat, clock


async def test_only_health_officers_have_the_commands(make_bot: MakeBot) -> None:
    wechat, _clock = await _bot(make_bot)
    unknown = await wechat.say(STUDENT, "随便说说")
    for command in ["追踪 S002", "trace S002", "事件 S002 发热", "incident mark 1 all", "追踪"]:
        assert await wechat.say(STUDENT, command) == unknown  # learns nothing
        assert await wechat.say(OTHER, command) == await wechat.say(OTHER, "blah")  # unbound
    assert "追踪" not in await wechat.say(STUDENT, "帮助")
    help_text = await wechat.say(OFFICER, "help")
    assert "trace <person no.> [days]" in help_text and "incident <person no.> <note>" in help_text
    async with wechat.client.app[K.SESSIONS]() as s:
        assert (
            await s.execute(select(AuditEntry).where(AuditEntry.action == "trace"))
        ).first() is (None)
        assert (await s.execute(select(OutboxMessage))).first() is None


async def test_a_trace_in_chat_is_masked_and_its_link_shows_the_full_list(
    make_bot: MakeBot,
) -> None:
    wechat, clock = await _bot(make_bot)
    reply = await wechat.say(OFFICER, "trace s001")
    assert reply.startswith("Trace of 张* (S001), last 14 days, margin 15 min: 1 contact(s).")
    assert "1. 李* (S002) — Library <main>, Nov 25 14:30, 45 min" in reply
    assert "李四" not in reply
    url = unescape(re.search(r'href="([^"]+)"', reply)[1])  # type: ignore[index]
    assert url.startswith("http://127.0.0.1:8080/trace?t=")
    path = url.removeprefix("http://127.0.0.1:8080")
    page = await wechat.client.get(path)
    html = await page.text()
    assert page.status == 200 and page.headers["Cache-Control"] == "no-store"
    assert "李四" in html and "S002" in html and "Computer Science" in html
    assert "Library &lt;main&gt; (LIB)" in html and "<main>" not in html.split("<body>")[1][:60]
    async with wechat.client.app[K.SESSIONS]() as s:
        actions = [a for (a,) in await s.execute(select(AuditEntry.action))]
    assert actions.count("trace") == 1 and actions.count("trace_read") == 1
    # 15 minutes later the link is dead; a tampered one never worked.
    clock.advance(16 * 60)
    expired = await wechat.client.get(path)
    assert expired.status == 403 and "expired" in await expired.text()
    forged = await wechat.client.get(path[:-4] + "AAAA")
    assert forged.status == 403
    assert (await wechat.client.get("/trace")).status == 400
    assert (await wechat.client.get("/trace?t=garbage")).status == 400


async def test_trace_input_is_checked(make_bot: MakeBot) -> None:
    wechat, _clock = await _bot(make_bot)
    assert await wechat.say(OFFICER, "trace") == (
        "Send trace <person no.> [days], e.g. trace S001 14."
    )
    assert await wechat.say(OFFICER, "trace S001 99") == (
        "Days must be a whole number from 1 to 28."
    )
    assert await wechat.say(OFFICER, "trace <script>") == (
        "Send trace <person no.> [days], e.g. trace S001 14."
    )
    assert await wechat.say(OFFICER, "trace X999") == "There is nobody with person number X999."
    assert (await wechat.say(OFFICER, "TRACE S002 1")).startswith(
        "Trace of 李* (S002), last 1 days, margin 15 min: 1 contact(s).\n1. 张* (S001)"
    )


async def test_an_incident_by_chat(make_bot: MakeBot) -> None:
    wechat, _clock = await _bot(make_bot)
    opened = await wechat.say(OFFICER, "incident S001 positive test")
    assert opened.startswith("Incident #1 opened for 张* (S001): 🟢 Green → 🔴 Red;")
    assert "1 contact(s) found" in opened and "1. 李* (S002)" in opened
    assert "msgmenucontent=incident mark 1 all" in opened
    assert "msgmenucontent=incident show 1" in opened
    assert await wechat.say(OFFICER, "incident S001 again") == (
        "Incident #1 is already open for this person. Send incident show 1 to see it."
    )
    marked = await wechat.say(OFFICER, "incident mark 1 all")
    assert marked == (
        "Incident #1: 1 marked as close contacts; they and their responsible persons have "
        "been told."
    )
    assert "Marked before: S002" in await wechat.say(OFFICER, "incident mark 1 S002")
    assert "Not contacts of this incident: T001" in await wechat.say(
        OFFICER, "incident mark 1 T001"
    )
    shown = await wechat.say(OFFICER, "incident show #1")
    assert "Incident #1 (open) for 张* (S001): positive test" in shown
    assert "1 contact(s), 1 marked as close contacts." in shown
    closed = await wechat.say(OFFICER, "incident close 1 all clear")
    assert closed.startswith("Incident #1 closed.\nIncident #1 (closed)")
    assert "closed: all clear" in closed
    assert await wechat.say(OFFICER, "incident close 1") == "Incident #1 is closed."
    assert await wechat.say(OFFICER, "incident show 7") == "There is no incident with that number."
    assert (await wechat.say(OFFICER, "incident")).startswith("Incidents:\nincident <person no.>")
    assert (await wechat.say(OFFICER, "incident S001")).startswith("Incidents:")
    async with wechat.client.app[K.SESSIONS]() as s:
        pushes = [
            (no, kind, urgent)
            for no, kind, urgent in await s.execute(
                select(Person.person_no, OutboxMessage.kind, OutboxMessage.urgent).join(
                    Person, Person.id == OutboxMessage.person_id
                )
            )
        ]
        statuses = dict((await s.execute(select(Person.person_no, Person.status))).all())
    assert ("S001", "incident_case", True) in pushes and ("S002", "close_contact", True) in pushes
    assert statuses["S001"] == "red" and statuses["S002"] == "yellow"
    # The student, in Chinese, learns nothing from the same words.
    assert await wechat.say(STUDENT, "事件 查看 1") == await wechat.say(STUDENT, "乱码")
