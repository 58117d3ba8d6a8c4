"""/cgi-bin/message/custom/send and /cgi-bin/message/template/send: pushes to users."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from aiohttp import web

from simulator.api.common import ok, read_json
from simulator.chatlog import Article, Message
from simulator.errors import ApiError
from simulator.keys import STATE
from simulator.state import SimulatorState
from simulator.users import User
from simulator.wire import build_xml

routes = web.RouteTableDef()

MAX_TEXT_BYTES = 2048
TEMPLATE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
CLIENT_MSG_TTL = 600  # WeChat drops a repeated client_msg_id within 10 minutes


@routes.post("/cgi-bin/message/custom/send")
async def custom_send(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    user = _follower(state, body.get("touser"))
    message = _custom_message(state, body)
    user.window.spend(state.clock.time(), state.users.kf_limits)
    state.log.add(user.openid, message)
    return ok()


def _custom_message(state: SimulatorState, body: dict[str, Any]) -> Message:
    msgtype = body.get("msgtype")
    part = body.get(msgtype) if isinstance(msgtype, str) else None
    if msgtype not in ("text", "image", "news", "msgmenu"):
        raise ApiError(40008, f"msgtype {msgtype!r} (the simulator shows text/image/news/msgmenu)")
    if not isinstance(part, dict):
        raise ApiError(47001, f"{msgtype} must be an object")
    if msgtype == "text":
        return Message("out", "text", "custom", text=_text(part.get("content")))
    if msgtype == "image":
        media_id = part.get("media_id")
        if not media_id:
            raise ApiError(41006)
        return Message("out", "image", "custom", media_id=state.media.get(media_id).media_id)
    if msgtype == "news":
        return Message("out", "news", "custom", articles=_articles(part.get("articles")))
    return Message("out", "text", "custom", text=_menu_text(part))


def _text(content: object) -> str:
    if not isinstance(content, str) or not content:
        raise ApiError(44004)
    if len(content.encode()) > MAX_TEXT_BYTES:
        raise ApiError(45002, f"{len(content.encode())} bytes is over {MAX_TEXT_BYTES}")
    return content


def _articles(raw: object) -> tuple[Article, ...]:
    if not isinstance(raw, list) or not raw:
        raise ApiError(44003)
    if len(raw) > 1:
        raise ApiError(45008, "news carries one article since 2018")
    item = raw[0]
    if not isinstance(item, dict) or not isinstance(item.get("title"), str):
        raise ApiError(47001, "article needs a title")
    return (
        Article(
            title=item["title"],
            description=str(item.get("description", "")),
            url=str(item.get("url", "")),
            picurl=str(item.get("picurl", "")),
        ),
    )


def _menu_text(part: dict[str, Any]) -> str:
    """A msgmenu as the tappable-option text the phone shows for it."""
    options = part.get("list")
    if not isinstance(options, list) or not options:
        raise ApiError(47001, "msgmenu.list must hold options")
    lines = [str(part.get("head_content", ""))]
    for option in options:
        if not isinstance(option, dict) or not option.get("content"):
            raise ApiError(47001, "each msgmenu option needs id and content")
        content = str(option["content"])
        lines.append(
            f'<a href="weixin://bizmsgmenu?msgmenucontent={content}'
            f'&msgmenuid={option.get("id", "")}">{content}</a>'
        )
    lines.append(str(part.get("tail_content", "")))
    return "\n".join(line for line in lines if line)


@routes.post("/cgi-bin/message/template/send")
async def template_send(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    user = _follower(state, body.get("touser"))
    template_id = body.get("template_id")
    if not isinstance(template_id, str) or not TEMPLATE_ID.fullmatch(template_id):
        raise ApiError(40037, f"template_id {template_id!r}")
    fields = _template_fields(body.get("data"))
    url = body.get("url", "")
    if not isinstance(url, str):
        raise ApiError(47001, "url must be a string")
    now = state.clock.time()
    client_msg_id = body.get("client_msg_id")
    if isinstance(client_msg_id, str) and client_msg_id:
        earlier = state.template_sends.get((user.openid, client_msg_id))
        if earlier is not None and now - earlier[1] < CLIENT_MSG_TTL:
            return ok(msgid=earlier[0])
    msgid = state.next_msg_id()
    if isinstance(client_msg_id, str) and client_msg_id:
        _forget_old_sends(state, now)
        state.template_sends[(user.openid, client_msg_id)] = (msgid, now)
    state.log.add(
        user.openid,
        Message(
            "out", "template", "template", key=template_id, fields=fields, url=url, msg_id=msgid
        ),
    )
    state.spawn(_report_finished(state, user.openid, msgid))
    return ok(msgid=msgid)


def _forget_old_sends(state: SimulatorState, now: float) -> None:
    # Entries are inserted in time order, so the expired ones are at the front: evicting
    # from there keeps each send O(1) even with hundreds of thousands remembered.
    sends = state.template_sends
    while sends:
        oldest = next(iter(sends))
        if now - sends[oldest][1] < CLIENT_MSG_TTL:
            break
        del sends[oldest]


def _template_fields(data: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(data, dict):
        raise ApiError(47001, "data must be an object of {name: {value}}")
    fields = []
    for name, item in data.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            raise ApiError(47001, f"data.{name} must be {{'value': str}}")
        fields.append((str(name), item["value"]))
    return tuple(fields)


async def _report_finished(state: SimulatorState, openid: str, msgid: int) -> None:
    """WeChat tells the bot how a template send went, a little later, as an event."""
    await asyncio.sleep(state.template_report_delay)
    user = state.users.get(openid)
    status = "success" if user is not None and user.following else "failed:user block"
    xml = build_xml(
        [
            ("ToUserName", state.config.gh_id),
            ("FromUserName", openid),
            ("CreateTime", int(state.clock.time())),
            ("MsgType", "event"),
            ("Event", "TEMPLATESENDJOBFINISH"),
            ("MsgID", msgid),
            ("Status", status),
        ]
    )
    await state.callback.deliver(xml, openid)


def _follower(state: SimulatorState, openid: object) -> User:
    user = state.users.require(openid)
    if not user.following:
        raise ApiError(43004, f"{user.openid} does not follow the account")
    return user
