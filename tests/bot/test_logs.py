"""Logs carry no personal data: names, person numbers, ID numbers, openids."""

from __future__ import annotations

import logging

import pytest

from tests.bot.conftest import MakeBot
from tests.support import id_tail, resident_id


async def test_a_bind_flow_and_failures_log_nothing_personal(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wechat = await make_bot()
    openid = "o_private_openid_123"
    await wechat.say(openid, "绑定 S001 000000")
    await wechat.say(openid, f"绑定 S001 {id_tail('S001')}")
    await wechat.say(openid, "帮助")
    await wechat.post("<xml><broken")  # a rejected callback logs its reason
    text = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for secret in ("张三", "S001", resident_id("11010520000101123"), id_tail("S001"), openid):
        assert secret not in text, f"{secret!r} reached the log"
    assert "callback rejected" in text  # the log is not simply empty
