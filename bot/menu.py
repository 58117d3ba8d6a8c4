"""The custom menu of DESIGN.md, and `healthbot menu sync` to create it through the API."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from bot.guardtags import MenuAPI, guard_tag_id
from handlers import keywords as kw

__all__ = ["MenuAPI", "default_menu", "guard_menu", "sync", "validate"]


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


def guard_menu(tag_id: int) -> dict[str, Any]:
    """The default menu with the VERIFY scanner one tap away, for users with the guard tag.

    The scanner takes a top-level place; the top-level button it displaces moves into the
    first group with room.
    """
    menu = copy.deepcopy(default_menu())
    buttons: list[dict[str, Any]] = menu["button"]
    scanner = {"type": "scancode_waitmsg", "name": "扫码核验", "key": kw.MENU_VERIFY}
    if len(buttons) < 3:
        buttons.append(scanner)
    else:
        index = next((i for i, b in enumerate(buttons) if not b.get("sub_button")), None)
        group = next((b for b in buttons if b.get("sub_button") and len(b["sub_button"]) < 5), None)
        if index is None or group is None:
            raise ValueError("no room for the VERIFY scanner in the default menu")
        group["sub_button"].append(buttons[index])
        buttons[index] = scanner
    menu["matchrule"] = {"tag_id": str(tag_id)}
    return menu


async def sync(api: MenuAPI, guard_openids: Sequence[str] = ()) -> dict[str, Any]:
    """Create the default menu, the guards' conditional menu, and tag the guards given."""
    menu = default_menu()
    validate(menu)
    await api.create_menu(menu)
    tag_id = await guard_tag_id(api, create=True)
    assert tag_id is not None
    conditional = guard_menu(tag_id)
    validate(conditional)
    current = await api.get_menu()
    for old in current.get("conditionalmenu", []) or []:
        if str((old.get("matchrule") or {}).get("tag_id", "")) == str(tag_id):
            await api.delete_conditional_menu(str(old["menuid"]))
    await api.add_conditional_menu(conditional)
    if guard_openids:
        await api.tag_users(tag_id, list(guard_openids))
    return menu


async def prune_guard_tag(api: MenuAPI, guard_openids: Sequence[str]) -> list[str]:
    """Untag whoever has the guard tag but is not among `guard_openids` (every guard): a guard
    who lost the role, or left, loses the scanner button. The openids untagged."""
    tag_id = await guard_tag_id(api, create=False)
    if tag_id is None:
        return []
    keep = set(guard_openids)
    others = sorted(o for o in await api.tagged_users(tag_id) if o not in keep)
    if others:
        await api.untag_users(tag_id, others)
    return others
