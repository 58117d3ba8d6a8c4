"""Passive replies as WeChat reads them: every field back exactly, whatever the text holds."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from bot.replies import Image, Silence, Text
from bot.wechat.render import SUCCESS, render


@pytest.mark.parametrize(
    "content",
    [
        "你可以发送：帮助",
        "a ]]> inside, and ]]>]]> twice, <tags> & ampersands",
        "]]>",
        "ends with ]]",
        "line one\nline two\n",
    ],
)
def test_a_text_reply_reads_back_exactly(content: str) -> None:
    before = int(time.time())
    xml = render(Text(content), openid="o-user]]>", account="gh_account")
    root = ET.fromstring(xml)
    assert root.tag == "xml"
    assert root.findtext("ToUserName") == "o-user]]>"
    assert root.findtext("FromUserName") == "gh_account"
    assert root.findtext("MsgType") == "text"
    assert root.findtext("Content") == content
    assert before <= int(root.findtext("CreateTime") or 0) <= int(time.time())


def test_an_image_reply_names_its_media() -> None:
    root = ET.fromstring(render(Image("MEDIA_id-1"), openid="o1", account="gh"))
    assert root.findtext("MsgType") == "image"
    assert root.findtext("Image/MediaId") == "MEDIA_id-1"
    assert root.find("Content") is None


def test_nothing_to_say_is_success() -> None:
    assert render(Silence(), openid="o1", account="gh") == SUCCESS
    assert render(Text(""), openid="o1", account="gh") == SUCCESS
