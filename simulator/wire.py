"""The XML on the wire: messages the phone sends to the bot, and the replies it reads back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

from simulator.chatlog import Article

Field = tuple[str, "str | int | Sequence[Field]"]


class ReplyError(Exception):
    """The bot's answer is not something WeChat would show: the user sees 'unavailable'."""


def build_xml(fields: Sequence[Field]) -> str:
    """`<xml>` with text in CDATA and numbers bare, as WeChat writes its callbacks."""
    return "<xml>" + "".join(_element(name, value) for name, value in fields) + "</xml>"


def _element(name: str, value: str | int | Sequence[Field]) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{name}: booleans have no XML form here")
    if isinstance(value, int):
        inner = str(value)
    elif isinstance(value, str):
        # "]]>" cannot appear inside CDATA: split it across two sections.
        inner = "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
    else:
        inner = "".join(_element(child, v) for child, v in value)
    return f"<{name}>{inner}</{name}>"


def parse_xml(text: str) -> dict[str, Any]:
    """The children of `<xml>`; xmltodict refuses entities, so XXE and billion laughs fail."""
    try:
        document = xmltodict.parse(text, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise ReplyError(f"not XML: {exc}") from exc
    root = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(root, dict):
        raise ReplyError("the root element is not <xml>")
    return root


def element_text(root: dict[str, Any], name: str) -> str:
    value = root.get(name)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True, slots=True)
class Reply:
    msgtype: str
    content: str = ""
    media_id: str = ""
    articles: tuple[Article, ...] = ()


def parse_reply(text: str) -> Reply:
    root = parse_xml(text)
    msgtype = element_text(root, "MsgType")
    if msgtype == "text":
        return Reply("text", content=element_text(root, "Content"))
    if msgtype == "image":
        image = root.get("Image")
        media_id = element_text(image, "MediaId") if isinstance(image, dict) else ""
        if not media_id:
            raise ReplyError("image reply without Image/MediaId")
        return Reply("image", media_id=media_id)
    if msgtype == "news":
        return Reply("news", articles=_articles(root))
    if msgtype in ("voice", "video", "music", "transfer_customer_service"):
        return Reply(msgtype)
    raise ReplyError(f"unknown reply MsgType {msgtype!r}")


def _articles(root: dict[str, Any]) -> tuple[Article, ...]:
    container = root.get("Articles")
    items = container.get("item") if isinstance(container, dict) else None
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list) or not items:
        raise ReplyError("news reply without Articles/item")
    return tuple(
        Article(
            title=element_text(item, "Title"),
            description=element_text(item, "Description"),
            url=element_text(item, "Url"),
            picurl=element_text(item, "PicUrl"),
        )
        for item in items
        if isinstance(item, dict)
    )
