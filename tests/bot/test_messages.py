"""Parsing a callback body into an Incoming: the fields the bot reads, and what it refuses."""

from __future__ import annotations

import pytest

from bot.wechat.messages import parse_incoming
from bot.wechat.security import CallbackRejected

HEAD = (
    "<xml><ToUserName><![CDATA[gh_test]]></ToUserName>"
    "<FromUserName><![CDATA[o_user-1]]></FromUserName><CreateTime>1700000000</CreateTime>"
)


def test_a_text_message() -> None:
    msg = parse_incoming(
        HEAD + "<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[ 打卡 36.5 ]]></Content>"
        "<MsgId>1234567890123456</MsgId></xml>"
    )
    assert (msg.openid, msg.account, msg.create_time, msg.kind) == (
        "o_user-1",
        "gh_test",
        1700000000,
        "text",
    )
    assert (msg.msg_id, msg.content, msg.text) == (1234567890123456, " 打卡 36.5 ", "打卡 36.5")
    assert msg.dedup_key == "m:1234567890123456"


def test_a_guard_scan_and_a_poster_follow() -> None:
    scan = parse_incoming(
        HEAD + "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_waitmsg]]></Event>"
        "<EventKey><![CDATA[VERIFY]]></EventKey><ScanCodeInfo><ScanType><![CDATA[qrcode]]>"
        "</ScanType><ScanResult><![CDATA[HC1.abc]]></ScanResult></ScanCodeInfo></xml>"
    )
    assert (scan.kind, scan.event, scan.event_key, scan.scan_result) == (
        "event",
        "scancode_waitmsg",
        "VERIFY",
        "HC1.abc",
    )
    follow = parse_incoming(
        HEAD + "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[SUBSCRIBE]]></Event>"
        "<EventKey><![CDATA[qrscene_place:GATE1]]></EventKey><Ticket>t</Ticket></xml>"
    )
    assert (follow.event, follow.event_key) == ("subscribe", "qrscene_place:GATE1")
    report = parse_incoming(
        HEAD + "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[TEMPLATESENDJOBFINISH]]>"
        "</Event><MsgID>42</MsgID><Status><![CDATA[success]]></Status></xml>"
    )
    assert (report.event, report.msg_id, report.status) == ("templatesendjobfinish", 42, "success")


def test_odd_shapes_read_as_absent_fields() -> None:
    # A repeated or nested element where text belongs is treated as missing, not guessed at.
    msg = parse_incoming(
        HEAD + "<MsgType>text</MsgType><Content>a</Content><Content>b</Content>"
        "<Status><x>1</x></Status></xml>"
    )
    assert (msg.content, msg.status) == ("", "")


@pytest.mark.parametrize(
    "body",
    [
        "not xml",
        "<xml>",
        "<xml></xml>",
        "<other><MsgType>text</MsgType></other>",
        HEAD + "<Content>no type</Content></xml>",
        '<!DOCTYPE x [<!ENTITY a "aaaa">]>' + HEAD + "<MsgType>text</MsgType></xml>",
        HEAD.replace("o_user-1", "bad id!") + "<MsgType>text</MsgType></xml>",
        HEAD.replace("1700000000", "soon") + "<MsgType>text</MsgType></xml>",
    ],
)
def test_malformed_bodies_are_refused_with_a_400(body: str) -> None:
    with pytest.raises(CallbackRejected) as refused:
        parse_incoming(body)
    assert refused.value.status == 400


def test_a_deeply_nested_element_is_ignored_not_a_crash() -> None:
    # The plain-mode signature does not cover the body: it may be anything a replayed URL
    # carries. Elements nested deeper than WeChat ever nests are read as absent.
    deep = "<x>" * 5000 + "</x>" * 5000
    msg = parse_incoming(
        HEAD + f"<MsgType>text</MsgType><Content>帮助</Content><Extra>{deep}</Extra></xml>"
    )
    assert (msg.kind, msg.content) == ("text", "帮助")
