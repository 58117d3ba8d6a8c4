"""Binding through the callback: one message, step by step, refusals, limits, audit."""

from __future__ import annotations

from sqlalchemy import func, select

from bot import appkeys as K
from storage.models import AuditEntry, Person, WeChatAccount
from tests.bot.conftest import MakeBot
from tests.support import id_tail


async def _bound_person_no(wechat: object, openid: str) -> str | None:
    sessions = wechat.client.app[K.SESSIONS]  # type: ignore[attr-defined]
    async with sessions() as s:
        row = (
            await s.execute(
                select(Person.person_no)
                .join(WeChatAccount, WeChatAccount.person_id == Person.id)
                .where(WeChatAccount.openid == openid)
            )
        ).scalar_one_or_none()
    return row


async def test_quick_bind_in_one_message(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    reply = await wechat.say("o_a", f"绑定 S001 {id_tail('S001')}")
    assert "绑定成功" in reply and "张三" in reply
    assert await _bound_person_no(wechat, "o_a") == "S001"
    assert "msgmenucontent=帮助" in reply  # a tappable next step
    assert "已绑定" in await wechat.say("o_a", f"绑定 S001 {id_tail('S001')}")


async def test_bind_step_by_step_in_english(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    assert "English" in await wechat.say("o_en", "English")
    assert "person number" in await wechat.say("o_en", "bind")
    assert "last 6" in await wechat.say("o_en", "T001")
    reply = await wechat.say("o_en", id_tail("T001").lower())
    assert "Welcome, Jane Smith" in reply
    assert await _bound_person_no(wechat, "o_en") == "T001"


async def test_a_language_picked_before_binding_carries_over(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_lang", "English")
    reply = await wechat.say("o_lang", f"bind S001 {id_tail('S001')}")
    assert "Bound" in reply  # S001's record said zh_CN, the user chose English
    assert "You can send" in await wechat.say("o_lang", "HELP")
    await wechat.say("o_lang", "中文")
    assert "你可以发送" in await wechat.say("o_lang", "help")


async def test_wrong_pairs_do_not_say_which_part_was_wrong(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    wrong_tail = await wechat.say("o_b", "绑定 S001 999999")
    unknown_person = await wechat.say("o_b", f"绑定 NOSUCH {id_tail('S001')}")
    assert wrong_tail == unknown_person
    assert "不匹配" in wrong_tail
    assert await _bound_person_no(wechat, "o_b") is None


async def test_failures_are_limited_per_openid(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    for i in range(5):
        assert "不匹配" in await wechat.say("o_c", f"绑定 S002 00000{i}")
    # Even the right pair is refused now.
    assert "一小时" in await wechat.say("o_c", f"绑定 S002 {id_tail('S002')}")
    assert await _bound_person_no(wechat, "o_c") is None


async def test_failures_are_limited_per_person_across_accounts(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    for i in range(5):
        await wechat.say(f"o_attacker{i}", f"绑定 S002 12345{i}")
    assert "一小时" in await wechat.say("o_owner", f"绑定 S002 {id_tail('S002')}")


async def test_one_account_one_person(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_d", f"绑定 S001 {id_tail('S001')}")
    # The same person from another WeChat account is refused.
    assert "另一个微信号" in await wechat.say("o_e", f"绑定 S001 {id_tail('S001')}")
    # This account cannot take a second person.
    assert "解绑" in await wechat.say("o_d", f"绑定 S002 {id_tail('S002')}")
    assert await _bound_person_no(wechat, "o_d") == "S001"


async def test_unbind_then_rebind_elsewhere(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_f", f"绑定 S001 {id_tail('S001')}")
    reply = await wechat.say("o_f", "解绑")
    assert "msgmenucontent=" in reply
    assert "已保留" in await wechat.say("o_f", "no")
    assert await _bound_person_no(wechat, "o_f") == "S001"
    await wechat.say("o_f", "解绑")
    assert "已解除" in await wechat.say("o_f", "是")
    assert "绑定成功" in await wechat.say("o_g", f"绑定 S001 {id_tail('S001')}")
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions() as s:
        actions = (await s.execute(select(AuditEntry.action).order_by(AuditEntry.id))).scalars()
        assert list(actions) == ["bind", "unbind", "bind"]


async def test_failed_attempts_are_audited_without_the_guess(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_h", "绑定 S001 123456")
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions() as s:
        entry = (await s.execute(select(AuditEntry))).scalar_one()
        assert entry.action == "bind_failed" and "123456" not in entry.reason


async def test_cancel_leaves_the_flow(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_i", "绑定")
    assert "已取消" in await wechat.say("o_i", "取消")
    assert "没有" in await wechat.say("o_i", "取消")
    assert "没有看懂" in await wechat.say("o_i", "S001")  # no longer read as a person number


async def test_help_lists_exactly_what_the_user_may_use(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    unbound = await wechat.say("o_j", "帮助")
    assert "绑定" in unbound and "解绑" not in unbound
    await wechat.say("o_j", f"绑定 S001 {id_tail('S001')}")
    bound = await wechat.say("o_j", "帮助")
    assert "解绑" in bound and "绑定 <" not in bound


async def test_bad_input_mid_flow_keeps_the_step(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    await wechat.say("o_k", "绑定")
    assert "不像学工号" in await wechat.say("o_k", "'; DROP TABLE persons; --")
    assert "证件号后6位" in await wechat.say("o_k", "S001")
    assert "6位" in await wechat.say("o_k", "<script>")
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions() as s:
        assert (await s.execute(select(func.count()).select_from(Person))).scalar() == 3


async def test_the_principal_is_cached_by_the_reply_and_never_from_before_a_binding(
    make_bot: MakeBot,
) -> None:
    import json

    from bot.kv import MemoryKV
    from campus.accounts import DROPPED

    kv = MemoryKV()
    wechat = await make_bot(kv=kv)
    profile_key = wechat.client.app[K.SERVICES]["accounts"].profile_key
    # The first message reads the (unbound) principal from the database; binding drops it,
    # and the stale copy must not be cached with the reply.
    await wechat.say("o_c", f"绑定 S001 {id_tail('S001')}")
    dropped = await kv.get(profile_key("o_c"))
    assert dropped is not None and dropped.startswith(DROPPED)  # the drop's marker
    await wechat.say("o_c", "帮助")  # read again, and cached with this reply
    after = await kv.get(profile_key("o_c"))
    assert after is not None and b"S001" not in after  # encrypted with the data key
    vault = wechat.client.app[K.SERVICES]["vault"]
    assert json.loads(vault.decrypt(after))["person_no"] == "S001"


async def test_a_targeted_person_is_audited_and_their_counsellor_told_once(
    make_bot: MakeBot,
) -> None:
    """Wrong ID tails for a real person are audited against that person; the failure that
    reaches the person's hourly limit tells the person responsible for them, once."""
    from sqlalchemy import update

    from storage.models import OutboxMessage

    wechat = await make_bot()
    sessions = wechat.client.app[K.SESSIONS]
    async with sessions.begin() as s:
        teacher = (await s.execute(select(Person).where(Person.person_no == "T001"))).scalar_one()
        await s.execute(
            update(Person).where(Person.person_no == "S002").values(responsible_id=teacher.id)
        )
        target = (await s.execute(select(Person.id).where(Person.person_no == "S002"))).scalar()
    for i in range(7):  # five count; the last two are refused before any check
        await wechat.say(f"o_attacker{i}", f"绑定 S002 12345{i}")
    await wechat.say("o_stranger", "绑定 NOBODY 123456")
    async with sessions() as s:
        audited = (
            await s.execute(
                select(AuditEntry.action, AuditEntry.subject_person_id).order_by(AuditEntry.id)
            )
        ).all()
        pushes = list(
            (
                await s.execute(select(OutboxMessage).where(OutboxMessage.kind == "bind_limited"))
            ).scalars()
        )
    assert [tuple(a) for a in audited] == [
        *[("bind_failed", target)] * 4,
        ("bind_failed", target),
        ("bind_limited", target),
        ("bind_failed", None),  # no such person: nobody to tell
    ]
    (push,) = pushes
    assert push.person_id == teacher.id
    text = push.payload["text"]
    assert "5 attempts in the last hour" in text and "李* (S002)" in text  # T001 reads English
    assert "123450" not in text
