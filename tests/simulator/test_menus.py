"""Custom menus: WeChat's checks, menu/get, and conditional menus picked by tag."""

from __future__ import annotations

from typing import Any

import pytest

from tests.simulator.harness import Sim

MENU = [
    {"type": "click", "name": "打卡", "key": "CHECKIN"},
    {
        "name": "健康码",
        "sub_button": [
            {"type": "click", "name": "我的健康码", "key": "MY_CODE"},
            {"type": "scancode_waitmsg", "name": "扫码核验", "key": "VERIFY"},
        ],
    },
    {"type": "view", "name": "须知", "url": "https://example.edu/rules"},
]
GUARD_MENU = [{"type": "scancode_waitmsg", "name": "核验", "key": "VERIFY"}]


async def user_menu(sim: Sim, openid: str) -> Any:
    return (await sim.get("/sim/chat/user", openid=openid))["menu"]


async def test_create_then_get(sim: Sim) -> None:
    assert (await sim.api("menu/create", {"button": MENU}))["errcode"] == 0
    body = await sim.api("menu/get")
    buttons = body["menu"]["button"]
    assert [b["name"] for b in buttons] == ["打卡", "健康码", "须知"]
    assert buttons[0]["sub_button"] == []
    assert buttons[1]["sub_button"][1]["key"] == "VERIFY"


@pytest.mark.parametrize(
    ("buttons", "errcode"),
    [
        ([], 40016),
        ([MENU[0]] * 4, 40016),
        ([{"type": "tap", "name": "x", "key": "K"}], 40017),
        ([{"type": "click", "name": "x" * 17, "key": "K"}], 40018),
        ([{"type": "click", "name": "x"}], 40019),
        ([{"type": "view", "name": "x", "url": "ftp://x"}], 40055),
        ([{"name": "x", "sub_button": [MENU[0]] * 6}], 40023),
        ([{"name": "x", "sub_button": [{"type": "click", "name": "y", "key": ""}]}], 40026),
    ],
)
async def test_bad_menus_get_wechat_codes(sim: Sim, buttons: object, errcode: int) -> None:
    assert (await sim.api("menu/create", {"button": buttons}))["errcode"] == errcode


async def test_conditional_menu_for_a_tag(sim: Sim) -> None:
    student, guard = await sim.persona("S001"), await sim.persona("G001")
    rule = {"button": GUARD_MENU, "matchrule": {"tag_id": "100"}}
    assert (await sim.api("menu/addconditional", rule))["errcode"] == 65303  # no default yet
    await sim.api("menu/create", {"button": MENU})
    assert (await sim.api("menu/addconditional", rule))["errcode"] == 45159  # no such tag
    tag = (await sim.api("tags/create", {"tag": {"name": "guards"}}))["tag"]
    rule["matchrule"] = {"tag_id": str(tag["id"])}
    menuid = (await sim.api("menu/addconditional", rule))["menuid"]
    batch = {"openid_list": [guard], "tagid": tag["id"]}
    assert (await sim.api("tags/members/batchtagging", batch))["errcode"] == 0
    assert (await user_menu(sim, guard))["button"][0]["key"] == "VERIFY"
    assert (await user_menu(sim, student))["button"][0]["key"] == "CHECKIN"
    assert (await sim.api("menu/get"))["conditionalmenu"][0]["menuid"] == int(menuid)
    assert (await sim.api("user/info", openid=guard))["tagid_list"] == [tag["id"]]
    assert (await sim.api("menu/delconditional", {"menuid": menuid}))["errcode"] == 0
    assert (await user_menu(sim, guard))["button"][0]["key"] == "CHECKIN"
    assert (await sim.api("menu/delconditional", {"menuid": menuid}))["errcode"] == 65301


async def test_tag_rules(sim: Sim) -> None:
    openid = await sim.persona()
    assert (await sim.api("tags/create", {"tag": {"name": "a"}}))["tag"]["id"] == 100
    assert (await sim.api("tags/create", {"tag": {"name": "a"}}))["errcode"] == 45157
    assert (await sim.api("tags/create", {"tag": {"name": "x" * 31}}))["errcode"] == 45158
    assert (await sim.api("tags/create", {"tag": "a"}))["errcode"] == 47001
    bad_openid = {"openid_list": ["o-unknown"], "tagid": 100}
    assert (await sim.api("tags/members/batchtagging", bad_openid))["errcode"] == 40003
    too_many = {"openid_list": [openid] * 51, "tagid": 100}
    assert (await sim.api("tags/members/batchtagging", too_many))["errcode"] == 40032
    await sim.api("tags/members/batchtagging", {"openid_list": [openid], "tagid": 100})
    assert (await sim.api("tags/get"))["tags"] == [{"id": 100, "name": "a", "count": 1}]
    tagged = await sim.api("user/tag/get", {"tagid": 100, "next_openid": ""})
    assert (tagged["count"], tagged["data"]["openid"], tagged["next_openid"]) == (1, [openid], "")
    await sim.api("tags/members/batchuntagging", {"openid_list": [openid], "tagid": 100})
    assert (await sim.api("user/tag/get", {"tagid": 100}))["data"]["openid"] == []
    assert (await sim.api("user/tag/get", {"tagid": 999}))["errcode"] == 45159


async def test_buttons_the_menu_lacks_are_refused_to_the_page(sim: Sim) -> None:
    openid = await sim.persona()
    body = await sim.chat(openid, 409, type="click", key="CHECKIN")
    assert "no click button" in body["error"]
    await sim.api("menu/create", {"button": MENU})
    await sim.chat(openid, type="click", key="CHECKIN")
    message = sim.bot.callbacks[-1].message
    assert (message.type, message.event, message.key) == ("event", "click", "CHECKIN")
    await sim.chat(openid, type="view", url="https://example.edu/rules")
    assert sim.bot.callbacks[-1].message.event == "view"
