"""What a user's phone does: turns taps, messages and scans into callbacks and shows the answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from simulator.callback import Delivery
from simulator.chatlog import Entry, Message
from simulator.errors import ApiError
from simulator.menus import find_button
from simulator.qr import decode_qr
from simulator.state import SimulatorState
from simulator.users import User
from simulator.wire import Field, build_xml

UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
SCAN_BUTTONS = frozenset({"scancode_waitmsg", "scancode_push"})


@dataclass(frozen=True, slots=True)
class SendText:
    content: str
    # Set when the text comes from tapping a `weixin://bizmsgmenu` option in a reply.
    menu_id: str | None = None


@dataclass(frozen=True, slots=True)
class Click:
    key: str


@dataclass(frozen=True, slots=True)
class View:
    url: str


@dataclass(frozen=True, slots=True)
class Scan:
    """Point a camera at an image: through a menu scan button, or the phone's own scanner."""

    image: bytes
    button_key: str | None = None


@dataclass(frozen=True, slots=True)
class Follow:
    pass


@dataclass(frozen=True, slots=True)
class Unfollow:
    pass


Action = SendText | Click | View | Scan | Follow | Unfollow


class Rejected(Exception):
    """The phone would not let the user do that (not following, no such button…)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    entries: list[Entry]
    delivery: Delivery | None = None


async def act(state: SimulatorState, user: User, action: Action) -> Outcome:
    return await _Phone(state, user).act(action)


class _Phone:
    def __init__(self, state: SimulatorState, user: User) -> None:
        self.state = state
        self.user = user
        self.now = state.clock.time()
        self.entries: list[Entry] = []

    async def act(self, action: Action) -> Outcome:
        if isinstance(action, Follow):
            return await self._follow()
        if isinstance(action, Scan) and action.button_key is None:
            # The phone's own scanner works for anyone: scanning a poster is one way to follow.
            return await self._scan(action)
        self._require_following()
        if isinstance(action, SendText):
            return await self._text(action)
        if isinstance(action, Click):
            return await self._click(action.key)
        if isinstance(action, View):
            return await self._view(action.url)
        if isinstance(action, Unfollow):
            return await self._unfollow()
        return await self._scan(action)

    async def _follow(self) -> Outcome:
        if self.user.following:
            raise Rejected("already following")
        self.state.users.follow(self.user, scene="ADD_SCENE_SEARCH")
        self.user.window.on_event(self.now)
        self._show(Message("in", "event", "user", event="subscribe"))
        return await self._deliver(self._event("subscribe", ""))

    async def _unfollow(self) -> Outcome:
        self.state.users.unfollow(self.user)
        self._show(Message("in", "event", "user", event="unsubscribe"))
        # An unfollowed account cannot show anything, so the reply goes nowhere.
        return await self._deliver(self._event("unsubscribe", ""), show_reply=False)

    async def _click(self, key: str) -> Outcome:
        button = self._button(frozenset({"click"}), key)
        self.user.window.on_event(self.now)
        label = str(button.get("name", ""))
        self._show(Message("in", "event", "user", event="CLICK", key=key, text=label))
        return await self._deliver(self._event("CLICK", key))

    async def _view(self, url: str) -> Outcome:
        self._button(frozenset({"view"}), url, field="url")
        self._show(Message("in", "event", "user", event="VIEW", key=url))
        # The user has left for the browser: WeChat shows no reply to a VIEW.
        return await self._deliver(self._event("VIEW", url), show_reply=False)

    async def _text(self, text: SendText) -> Outcome:
        self.user.window.on_message(self.now)
        msg_id = self.state.next_msg_id()
        self._show(Message("in", "text", "user", text=text.content, msg_id=msg_id))
        fields: list[Field] = [*self._head("text"), ("Content", text.content), ("MsgId", msg_id)]
        if text.menu_id is not None:
            fields.append(("bizmsgmenuid", text.menu_id))
        return await self._deliver(build_xml(fields))

    async def _scan(self, scan: Scan) -> Outcome:
        button = None
        if scan.button_key is not None:
            button = self._button(SCAN_BUTTONS, scan.button_key)
        text = await asyncio.to_thread(decode_qr, scan.image)
        if text is None:
            raise Rejected("no QR code found in that image")
        if button is not None:
            return await self._scan_for_button(str(button["type"]), str(button["key"]), text)
        return await self._scan_with_camera(text)

    async def _scan_for_button(self, event: str, key: str, text: str) -> Outcome:
        """A scancode_* button: WeChat hands whatever was scanned to the account."""
        self.user.window.on_event(self.now)
        self._show(Message("in", "event", "user", event=event, key=key, text=text))
        info: list[Field] = [("ScanType", "qrcode"), ("ScanResult", text)]
        return await self._deliver(self._event(event, key, [("ScanCodeInfo", info)]))

    async def _scan_with_camera(self, text: str) -> Outcome:
        """The phone's scanner: only this account's own QR codes reach the account."""
        ticket = self.state.qr.by_url(text)
        if ticket is None:
            self._show(Message("system", "system", "sim", code="scan_result", text=text))
            return Outcome(self.entries)
        if ticket.expired(self.now):
            self._show(Message("system", "system", "sim", code="qr_expired", text=ticket.scene))
            return Outcome(self.entries)
        self.user.window.on_event(self.now)
        extra: list[Field] = [("Ticket", ticket.ticket)]
        if self.user.following:
            self._show(Message("in", "event", "user", event="SCAN", key=ticket.scene))
            return await self._deliver(self._event("SCAN", ticket.scene, extra))
        self.state.users.follow(self.user, scene="ADD_SCENE_QR_CODE", qr_scene_str=ticket.scene)
        key = "qrscene_" + ticket.scene
        self._show(Message("in", "event", "user", event="subscribe", key=key))
        return await self._deliver(self._event("subscribe", key, extra))

    def _require_following(self) -> None:
        if not self.user.following:
            raise Rejected("not following the account: subscribe first")

    def _button(self, types: frozenset[str], value: str, field: str = "key") -> dict[str, Any]:
        menu = self.state.menus.for_user(self.user.tags, self.user.language)
        try:
            return find_button(menu, types, value, field)
        except LookupError as exc:
            raise Rejected(str(exc)) from exc

    def _head(self, msgtype: str) -> list[Field]:
        return [
            ("ToUserName", self.state.config.gh_id),
            ("FromUserName", self.user.openid),
            ("CreateTime", int(self.now)),
            ("MsgType", msgtype),
        ]

    def _event(self, event: str, key: str, extra: list[Field] | None = None) -> str:
        return build_xml(
            [*self._head("event"), ("Event", event), ("EventKey", key), *(extra or [])]
        )

    def _show(self, message: Message) -> None:
        self.entries.append(self.state.log.add(self.user.openid, message))

    async def _deliver(self, xml: str, *, show_reply: bool = True) -> Outcome:
        delivery = await self.state.callback.deliver(xml, self.user.openid)
        if show_reply:
            shown = self._what_the_phone_shows(delivery)
            if shown is not None:
                self._show(shown)
        return Outcome(self.entries, delivery)

    def _what_the_phone_shows(self, delivery: Delivery) -> Message | None:
        unavailable = Message("system", "system", "sim", code="unavailable", text=UNAVAILABLE)
        if delivery.outcome in ("failed", "invalid"):
            return unavailable
        reply = delivery.reply
        if reply is None or reply.msgtype == "transfer_customer_service":
            return None
        if reply.msgtype == "text":
            return Message("out", "text", "reply", text=reply.content)
        if reply.msgtype == "news":
            return Message("out", "news", "reply", articles=reply.articles)
        if reply.msgtype == "image":
            try:
                self.state.media.get(reply.media_id)
            except ApiError:
                return unavailable  # WeChat cannot show an image it does not have
            return Message("out", "image", "reply", media_id=reply.media_id)
        return Message("system", "system", "sim", code="unsupported_reply", text=reply.msgtype)
