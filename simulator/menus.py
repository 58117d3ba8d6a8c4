"""Custom menus: WeChat's validation of /cgi-bin/menu/create, and which menu a user sees."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from simulator.errors import ApiError

BUTTON_TYPES = frozenset(
    {
        "click",
        "view",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
        "media_id",
        "article_id",
        "article_view_limited",
        "miniprogram",
    }
)
KEYED_TYPES = frozenset(
    {
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
    }
)
MAX_TOP, MAX_SUB = 3, 5
TOP_NAME_BYTES, SUB_NAME_BYTES = 16, 60
KEY_BYTES, URL_BYTES = 128, 1024


@dataclass(frozen=True, slots=True)
class _Codes:
    type: int
    name: int
    key: int
    url: int
    domain: int


_TOP = _Codes(type=40017, name=40018, key=40019, url=40020, domain=40055)
_SUB = _Codes(type=40024, name=40025, key=40026, url=40027, domain=40054)


def validate_buttons(buttons: object) -> list[dict[str, Any]]:
    """Check a `button` list as WeChat does; return a copy in menu/get's shape."""
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= MAX_TOP:
        raise ApiError(40016, f"button must be a list of 1–{MAX_TOP}")
    result = []
    for index, button in enumerate(buttons):
        where = f"button[{index}]"
        if not isinstance(button, dict):
            raise ApiError(40016, f"{where} is not an object")
        _check_name(button, TOP_NAME_BYTES, _TOP.name, where)
        subs = button.get("sub_button") or []
        if subs:
            if not isinstance(subs, list) or len(subs) > MAX_SUB:
                raise ApiError(40023, f"{where}.sub_button must be a list of 1–{MAX_SUB}")
            checked = []
            for sub_index, sub in enumerate(subs):
                sub_where = f"{where}.sub_button[{sub_index}]"
                if not isinstance(sub, dict):
                    raise ApiError(40024, f"{sub_where} is not an object")
                _check_name(sub, SUB_NAME_BYTES, _SUB.name, sub_where)
                _check_leaf(sub, _SUB, sub_where)
                checked.append(copy.deepcopy(sub))
            result.append({"name": button["name"], "sub_button": checked})
        else:
            _check_leaf(button, _TOP, where)
            result.append({**copy.deepcopy(button), "sub_button": []})
    return result


def _check_name(button: dict[str, Any], limit: int, code: int, where: str) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name or len(name.encode()) > limit:
        raise ApiError(code, f"{where}.name must be 1–{limit} bytes")


def _check_leaf(button: dict[str, Any], codes: _Codes, where: str) -> None:
    kind = button.get("type")
    if kind not in BUTTON_TYPES:
        raise ApiError(codes.type, f"{where}.type {kind!r}")
    if kind in KEYED_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not key or len(key.encode()) > KEY_BYTES:
            raise ApiError(codes.key, f"{where}.key must be 1–{KEY_BYTES} bytes")
    if kind in ("view", "miniprogram"):
        url = button.get("url")
        if not isinstance(url, str) or not url or len(url.encode()) > URL_BYTES:
            raise ApiError(codes.url, f"{where}.url must be 1–{URL_BYTES} bytes")
        if not url.startswith(("http://", "https://")):
            raise ApiError(codes.domain, f"{where}.url {url!r} is not http(s)")
    if kind in ("media_id", "article_id", "article_view_limited"):
        field = "article_id" if kind.startswith("article") else "media_id"
        if not isinstance(button.get(field), str) or not button[field]:
            raise ApiError(47001, f"{where}.{field} is required for type {kind}")


@dataclass(frozen=True, slots=True)
class ConditionalMenu:
    menuid: int
    buttons: list[dict[str, Any]]
    matchrule: dict[str, str]

    def matches(self, tags: set[int], language: str) -> bool:
        tag_id = self.matchrule.get("tag_id")
        if tag_id and int(tag_id) not in tags:
            return False
        rule_language = self.matchrule.get("language")
        return not rule_language or rule_language == language


class MenuStore:
    def __init__(self) -> None:
        self.default: list[dict[str, Any]] | None = None
        self.default_id = 0
        self.conditionals: list[ConditionalMenu] = []
        self._next_id = 400_000_000

    def create(self, buttons: object) -> None:
        self.default = validate_buttons(buttons)
        self.default_id = self._take_id()

    def add_conditional(self, buttons: object, matchrule: dict[str, str]) -> int:
        if self.default is None:
            raise ApiError(65303)
        menu = ConditionalMenu(self._take_id(), validate_buttons(buttons), matchrule)
        self.conditionals.append(menu)
        return menu.menuid

    def delete_conditional(self, menuid: object) -> None:
        for menu in self.conditionals:
            if str(menu.menuid) == str(menuid):
                self.conditionals.remove(menu)
                return
        raise ApiError(65301, f"menuid {menuid!r}")

    def delete(self) -> None:
        self.default, self.conditionals = None, []

    def snapshot(self) -> dict[str, Any]:
        """The body of /cgi-bin/menu/get."""
        if self.default is None:
            raise ApiError(46003)
        body: dict[str, Any] = {"menu": {"button": self.default, "menuid": self.default_id}}
        if self.conditionals:
            body["conditionalmenu"] = [
                {"button": m.buttons, "matchrule": m.matchrule, "menuid": m.menuid}
                for m in self.conditionals
            ]
        return body

    def for_user(self, tags: set[int], language: str) -> dict[str, Any] | None:
        """The menu a phone shows: the newest matching conditional menu, else the default."""
        for menu in reversed(self.conditionals):
            if menu.matches(tags, language):
                return {"button": menu.buttons, "menuid": menu.menuid, "conditional": True}
        if self.default is None:
            return None
        return {"button": self.default, "menuid": self.default_id, "conditional": False}

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id


def find_button(
    menu: dict[str, Any] | None, types: frozenset[str], value: str, field: str = "key"
) -> dict[str, Any]:
    """The leaf button of one of these types whose `field` is `value`, or LookupError."""
    for button in (menu or {}).get("button", []):
        for leaf in button.get("sub_button") or [button]:
            if leaf.get(field) == value and leaf.get("type") in types:
                return dict(leaf)
    kinds = "/".join(sorted(types))
    raise LookupError(f"no {kinds} button with {field} {value!r} in this user's menu")
