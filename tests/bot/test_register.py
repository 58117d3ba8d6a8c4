"""`登记`/`register` through the callback: the applicant, the host's push, the decision."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot import appkeys as K
from campus.registration import expire_and_remind
from scheduler.jobs import JOBS
from storage.models import AuditEntry, OutboxMessage, Person, Unit, UnitResponsible, WeChatAccount
from tests.bot.conftest import MakeBot
from tests.support import WeChat, id_tail, resident_id

APPLICANT_ID = resident_id("11010519900707123")
PHONE = "13800001234"


async def _outbox(wechat: WeChat) -> list[OutboxMessage]:
    async with wechat.client.app[K.SESSIONS]() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def _person(wechat: WeChat, **where: object) -> Person | None:
    async with wechat.client.app[K.SESSIONS]() as s:
        stmt = select(Person).filter_by(**where)
        return (await s.execute(stmt)).scalar_one_or_none()


async def _apply(
    wechat: WeChat, openid: str = "o_app", id_number: str = APPLICANT_ID, host: str = "T001"
) -> str:
    assert "name" in await wechat.say(openid, "register")
    assert "ID number" in await wechat.say(openid, "Wang Wu")
    assert "phone" in await wechat.say(openid, id_number)
    reply = await wechat.say(openid, PHONE)
    assert "msgmenucontent=vendor" in reply
    assert "host" in await wechat.say(openid, "vendor")
    assert "skip" in await wechat.say(openid, host)
    assert "180" in await wechat.say(openid, "skip")
    return await wechat.say(openid, "30")


async def _approved(wechat: WeChat) -> Person:
    """Wang Wu (English) registered with T001 as host, and approved; valid until a date."""
    await wechat.say("o_app", "English")
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await _apply(wechat)
    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.valid_until is not None
    await wechat.say("o_t", f"approve {person.id}")
    return person


async def test_registration_approved_by_the_host(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    assert "sent to your host" in await _apply(wechat)

    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.state == "pending" and person.category == "vendor"
    assert "waiting for confirmation" in await wechat.say("o_app", "code")
    host = await _person(wechat, person_no="T001")
    assert host is not None
    assert person.responsible_id == host.id and person.unit_id == host.unit_id
    assert person.valid_until is not None
    assert APPLICANT_ID.encode() not in person.id_cipher
    async with wechat.client.app[K.SESSIONS]() as s:
        account = await s.get(WeChatAccount, "o_app")
        assert account is not None and account.person_id == person.id

    (push,) = [r for r in await _outbox(wechat) if r.kind == "registration_request"]
    assert push.person_id == host.id
    text = push.payload["text"]
    assert "W*** W*" in text and "1101**********" in text and "138****1234" in text
    assert "Wang Wu" not in text and APPLICANT_ID not in text and PHONE not in text
    assert f"msgmenucontent=approve {person.id}" in text

    assert "Approved" in await wechat.say("o_t", f"approve {person.id}")
    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.state == "active"
    told = [r for r in await _outbox(wechat) if r.kind == "registration_decided"]
    assert len(told) == 1 and told[0].person_id == person.id
    assert "approved" in told[0].payload["text"]
    # Deciding twice changes nothing.
    assert "no registration waiting" in await wechat.say("o_t", f"approve {person.id}")
    async with wechat.client.app[K.SESSIONS]() as s:
        actions = set((await s.execute(select(AuditEntry.action))).scalars())
    assert {"register", "approve"} <= actions


async def test_registration_rejected(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    await _apply(wechat)
    person = await _person(wechat, name="Wang Wu")
    assert person is not None
    assert "Rejected" in await wechat.say("o_t", f"reject {person.id}")
    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.state == "left"
    (told,) = [r for r in await _outbox(wechat) if r.kind == "registration_decided"]
    assert told.person_id == person.id and "not approved" in told.payload["text"]


async def test_bad_id_number_is_asked_again(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await wechat.say("o_app", "register")
    await wechat.say("o_app", "Wang Wu")
    bad = APPLICANT_ID[:-1] + ("0" if APPLICANT_ID[-1] != "0" else "1")
    assert "not a valid ID number" in await wechat.say("o_app", bad)
    assert "phone" in await wechat.say("o_app", APPLICANT_ID)
    assert "11-digit" in await wechat.say("o_app", "12345")


async def test_host_must_be_active_faculty_or_staff(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    for reply in ("register", "Wang Wu", APPLICANT_ID, PHONE, "family"):
        await wechat.say("o_app", reply)
    assert "no active member of faculty or staff" in await wechat.say("o_app", "S001")
    assert "no active member of faculty or staff" in await wechat.say("o_app", "NOBODY")
    assert "skip" in await wechat.say("o_app", "T001")


async def test_duplicate_id_number_is_refused_politely(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await wechat.say("o_app2", "English")
    await _apply(wechat)
    await wechat.say("o_app2", "register")
    await wechat.say("o_app2", "Wang Wu")
    assert "registered already" in await wechat.say("o_app2", APPLICANT_ID)
    # A seeded person's ID number too.
    await wechat.say("o_app2", "register")
    await wechat.say("o_app2", "Li Si")
    assert "registered already" in await wechat.say("o_app2", resident_id("11010520000202456"))
    async with wechat.client.app[K.SESSIONS]() as s:
        n = len(list((await s.execute(select(Person.id))).scalars()))
    assert n == 4


async def test_only_host_or_unit_responsible_may_decide(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await _apply(wechat)
    person = await _person(wechat, name="Wang Wu")
    assert person is not None
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert "只有" in await wechat.say("o_s", f"同意登记 {person.id}")
    assert "只有" in await wechat.say("o_stranger", f"approve {person.id}")
    # The applicant cannot approve themselves (their record is pending).
    assert "Only the host" in await wechat.say("o_app", f"approve {person.id}")
    # A responsible person of the unit may.
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        cs = (await s.execute(select(Unit).where(Unit.code == "CS"))).scalar_one()
        s.add(UnitResponsible(unit_id=cs.id, person_no="S002"))
        await s.execute(
            update(Person).where(Person.person_no == "S002").values(roles="responsible")
        )
    await wechat.say("o_r", f"绑定 S002 {id_tail('S002')}")
    assert "已同意" in await wechat.say("o_r", f"同意登记 {person.id}")
    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.state == "active"


async def test_a_bound_account_cannot_register(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert "解绑" in await wechat.say("o_s", "登记")


async def test_no_personal_data_in_logs(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await _apply(wechat)
    assert APPLICANT_ID not in caplog.text and PHONE not in caplog.text
    assert not re.search(r"Wang Wu", caplog.text)


async def test_my_unit_for_responsible_persons_only(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_app", "English")
    await _apply(wechat)
    person = await _person(wechat, name="Wang Wu")
    assert person is not None
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        cs = (await s.execute(select(Unit).where(Unit.code == "CS"))).scalar_one()
        sub = Unit(code="CS1", name="CS Class 1", parent_id=cs.id)
        s.add(sub)
        await s.flush()
        s.add(
            Person(
                person_no="S101",
                name="S101",
                category="student",
                unit_id=sub.id,
                id_hash="h",
                id_cipher=b"x",
            )
        )
        s.add(UnitResponsible(unit_id=cs.id, person_no="T001"))
        await s.execute(
            update(Person).where(Person.person_no == "T001").values(roles="responsible")
        )
    await wechat.say("o_s", f"绑定 S001 {id_tail('S001')}")
    assert "只有负责人" in await wechat.say("o_s", "我的单位")
    assert "我的单位" not in await wechat.say("o_s", "帮助")
    await wechat.say("o_t", f"bind T001 {id_tail('T001')}")
    assert "myunit" in await wechat.say("o_t", "help")
    reply = await wechat.say("o_t", "myunit")
    assert "Your units: CS" in reply
    assert "Active persons: 4, bound to WeChat: 2." in reply  # S001, S002, T001, S101
    assert "student: 3" in reply and "staff: 1" in reply
    assert "Registrations waiting: 1" in reply
    assert "W*** W*" in reply and "Wang Wu" not in reply
    assert f"msgmenucontent=approve {person.id}" in reply
    assert "Approved" in await wechat.say("o_t", f"approve {person.id}")
    reply = await wechat.say("o_t", "My  Unit")  # DESIGN's two-word keyword, any case
    assert "No registrations are waiting." in reply and "vendor: 1" in reply


async def test_expiry_reminds_then_expires(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    person = await _approved(wechat)
    sessions = wechat.client.app[K.SESSIONS]
    notifications = wechat.client.app[K.SERVICES]["notifications"]
    until = person.valid_until
    now = datetime.now(UTC)

    assert await expire_and_remind(sessions, notifications, until - timedelta(days=10), now) == (
        0,
        0,
    )
    assert await expire_and_remind(sessions, notifications, until - timedelta(days=3), now) == (
        2,
        0,
    )
    # Run twice, reminded once.
    assert await expire_and_remind(sessions, notifications, until - timedelta(days=2), now) == (
        0,
        0,
    )
    rows = [r for r in await _outbox(wechat) if r.kind == "registration_expiring"]
    host = await _person(wechat, person_no="T001")
    assert host is not None
    assert {r.person_id for r in rows} == {person.id, host.id}
    host_text = next(r.payload["text"] for r in rows if r.person_id == host.id)
    assert "W*** W*" in host_text and "Wang Wu" not in host_text
    # The last valid day still counts; the day after, the record has expired.
    assert await expire_and_remind(sessions, notifications, until, now) == (0, 0)
    assert await expire_and_remind(sessions, notifications, until + timedelta(days=1), now) == (
        0,
        1,
    )
    person = await _person(wechat, name="Wang Wu")
    assert person is not None and person.state == "expired"
    assert "not active" in await wechat.say("o_app", "code")
    assert "registration_expiry" in JOBS


async def test_a_registration_in_progress_is_encrypted_in_the_state_store(
    make_bot: MakeBot,
) -> None:
    """The answers so far (name, ID number, phone) wait in the KV store between messages:
    encrypted with the data key and bound to the applicant (security review, G2)."""
    from bot.dispatch.state import StateStore
    from bot.keyspace import Keyspace

    wechat = await make_bot()
    await wechat.say("o_app", "English")
    assert "name" in await wechat.say("o_app", "register")
    assert "ID number" in await wechat.say("o_app", "Wang Wu")
    assert "phone" in await wechat.say("o_app", APPLICANT_ID)
    await wechat.say("o_app", PHONE)
    app = wechat.client.app
    kv, keys = app[K.KV_STORE], Keyspace(app[K.SETTINGS].wechat_appid)
    stored = await kv.get(keys.data("o_app"))
    assert stored is not None
    for secret in ("Wang Wu", APPLICANT_ID, PHONE):
        assert secret.encode() not in stored
    store = StateStore(kv, keys, 60, app[K.SERVICES]["vault"])
    data = (await store.load("o_app")).data
    assert (data["name"], data["id_number"], data["phone"]) == ("Wang Wu", APPLICANT_ID, PHONE)
    # The same bytes under another user's key are not that user's answers.
    await kv.set_many(
        {keys.state("o_thief"): b"register.category", keys.data("o_thief"): stored}, 60
    )
    assert (await store.load("o_thief")).data == {}
    # Nor is anything stored in clear (an entry from before encryption): the flow restarts.
    await kv.set_many({keys.data("o_app"): '{"name": "Wang Wu"}'}, 60)
    assert (await store.load("o_app")).data == {}


async def test_the_expiry_job_drops_the_expired_persons_cached_principal(
    make_bot: MakeBot,
) -> None:
    """Their chat answers change at once, not when their cached principal runs out."""
    from bot.clock import FrozenClock
    from bot.keyspace import Keyspace
    from campus.accounts import DROPPED
    from scheduler.jobs import run_job
    from scheduler.runner import job_context

    wechat = await make_bot()
    person = await _approved(wechat)
    await wechat.say("o_app", "help")  # their principal, cached with this reply
    app = wechat.client.app
    kv, keys = app[K.KV_STORE], Keyspace(app[K.SETTINGS].wechat_appid)
    cached = await kv.get(keys.profile("o_app"))
    assert cached is not None and not cached.startswith(DROPPED)
    day_after = datetime.combine(person.valid_until + timedelta(days=1), datetime.min.time(), UTC)
    ctx = job_context(
        app[K.SETTINGS],
        app[K.SESSIONS],
        kv,
        FrozenClock((day_after + timedelta(hours=12)).timestamp()),
    )
    assert "1 registrations expired" in await run_job(ctx, "registration_expiry")
    dropped = await kv.get(keys.profile("o_app"))
    assert dropped is not None and dropped.startswith(DROPPED)
