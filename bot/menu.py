"""The custom menu of DESIGN.md, and `healthbot menu sync` to create it through the API."""

from __future__ import annotations

from typing import Any, Protocol

from handlers import keywords as kw


class MenuAPI(Protocol):
    async def create_menu(self, menu: dict[str, Any]) -> object: ...


def _click(name: str, key: str) -> dict[str, str]:
    return {"type": "click", "name": name, "key": key}


def default_menu() -> dict[str, Any]:
    """What every follower sees: three top-level buttons, at most five under each."""
    return {
        "button": [
            {
                "name": "健康",
                "sub_button": [
                    _click("每日打卡", kw.MENU_CHECKIN),
                    _click("我的健康码", kw.MENU_MY_CODE),
                    _click("我的状态", kw.MENU_MY_STATUS),
                ],
            },
            {
                "name": "返校",
                "sub_button": [
                    _click("返校申请", kw.MENU_RETURN),
                    _click("订餐", kw.MENU_MEALS),
                ],
            },
            _click("帮助", kw.MENU_HELP),
        ]
    }


def validate(menu: dict[str, Any]) -> None:
    """WeChat's limits, checked before a call that would fail with a less helpful errcode."""
    buttons = menu.get("button", [])
    if not 1 <= len(buttons) <= 3:
        raise ValueError(f"a menu has 1–3 top-level buttons, not {len(buttons)}")
    for button in buttons:
        subs = button.get("sub_button", [])
        if len(subs) > 5:
            raise ValueError(f"button {button['name']!r} has {len(subs)} sub-buttons (max 5)")
        if len(button["name"].encode()) > 16:
            raise ValueError(f"top-level name {button['name']!r} is over 16 bytes")
        for sub in subs:
            if len(sub["name"].encode()) > 60:
                raise ValueError(f"sub-button name {sub['name']!r} is over 60 bytes")


async def sync(api: MenuAPI) -> dict[str, Any]:
    menu = default_menu()
    validate(menu)
    await api.create_menu(menu)
    return menu
