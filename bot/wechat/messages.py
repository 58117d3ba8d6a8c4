"""Incoming WeChat messages and events, parsed into one plain value type.

A callback body is a flat <xml> of a dozen elements (ScanCodeInfo and a few others nest one
level). ElementTree's C parser reads it in a third of the time xmltodict and wechatpy's
message classes took, and the fields are taken straight from it. DTDs and entities are
refused before any parsing (ensure_no_dtd)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree
from xml.parsers.expat import ExpatError

import xmltodict

from bot.wechat.security import CallbackRejected

_DANGEROUS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Incoming:
    openid: str
    account: str
    create_time: int
    kind: str  # text, image, voice, location, event, …
    msg_id: int = 0
    content: str = ""
    event: str = ""  # lower-case: subscribe, unsubscribe, scan, click, scancode_waitmsg, …
    event_key: str = ""  # the raw EventKey (qrscene_ kept on subscribe)
    scan_result: str = ""
    status: str = ""  # TEMPLATESENDJOBFINISH

    @property
    def dedup_key(self) -> str:
        if self.kind != "event" and self.msg_id:
            return f"m:{self.msg_id}"
        key = f"e:{self.openid}:{self.create_time}:{self.event}:{self.event_key}"
        # Two template reports for one user in the same second differ only by MsgID.
        return f"{key}:{self.msg_id}" if self.msg_id else key

    @property
    def text(self) -> str:
        return self.content.strip()


def ensure_no_dtd(body: bytes) -> None:
    # WeChat never sends a DTD; without one no entity can be declared, so neither expansion
    # bombs nor external entities can reach the parsers below.
    if _DANGEROUS.search(body):
        raise CallbackRejected(400, "XML with a DTD or entities")


def parse_outer(body: bytes) -> dict[str, Any]:
    """The outer <xml> of a callback body as a dict (safe mode reads Encrypt from it)."""
    ensure_no_dtd(body)
    try:
        doc = xmltodict.parse(body, disable_entities=True)
    except (ExpatError, ValueError) as exc:
        raise CallbackRejected(400, "malformed XML") from exc
    xml = doc.get("xml") if isinstance(doc, dict) else None
    if not isinstance(xml, dict):
        raise CallbackRejected(400, "no <xml> root")
    return xml


def _element_dict(root: ElementTree.Element, depth: int = 2) -> dict[str, Any]:
    """Children as a dict, as xmltodict gave them: text (None when empty), a nested dict for an
    element with children, a list for a repeated tag. Only `depth` levels are read (the fields
    taken are at most two deep, ScanCodeInfo's); deeper elements are read as empty dicts, so
    no body's nesting reaches Python's recursion limit."""
    found: dict[str, Any] = {}
    for child in root:
        value: Any = child.text
        if len(child):
            value = _element_dict(child, depth - 1) if depth > 1 else {}
        if child.tag in found:
            earlier = found[child.tag]
            found[child.tag] = [*earlier, value] if isinstance(earlier, list) else [earlier, value]
        else:
            found[child.tag] = value
    return found


def parse_incoming(xml_text: str) -> Incoming:
    ensure_no_dtd(xml_text.encode())
    try:
        # No DTD got past ensure_no_dtd, so no entity can expand or reach outside.
        root = ElementTree.fromstring(xml_text)  # noqa: S314
    except (ElementTree.ParseError, ValueError) as exc:
        raise CallbackRejected(400, "malformed message XML") from exc
    if root.tag != "xml" or not len(root):
        raise CallbackRejected(400, "empty message")
    raw = _element_dict(root)
    if not _str(raw.get("MsgType")):
        raise CallbackRejected(400, "malformed message XML")
    openid = _str(raw.get("FromUserName"))
    if not _OPENID.match(openid):
        raise CallbackRejected(400, "missing or malformed FromUserName")
    try:
        create_time = int(_str(raw.get("CreateTime")) or 0)
        # TEMPLATESENDJOBFINISH spells it MsgID (the id the template send returned).
        msg_id = int(_str(raw.get("MsgId")) or _str(raw.get("MsgID")) or 0)
    except ValueError as exc:
        raise CallbackRejected(400, "malformed CreateTime or MsgId") from exc
    kind = _str(raw.get("MsgType")).lower()
    event = _str(raw.get("Event")).lower() if kind == "event" else ""
    event_key = _str(raw.get("EventKey"))
    scan = raw.get("ScanCodeInfo")
    scan_result = _str(scan.get("ScanResult")) if isinstance(scan, dict) else ""
    return Incoming(
        openid=openid,
        account=_str(raw.get("ToUserName")),
        create_time=create_time,
        kind=kind,
        msg_id=msg_id,
        content=_str(raw.get("Content")) if kind == "text" else "",
        event=event,
        event_key=event_key,
        scan_result=scan_result,
        status=_str(raw.get("Status")),
    )


def _str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return ""  # nested elements where text was expected: treat as absent
