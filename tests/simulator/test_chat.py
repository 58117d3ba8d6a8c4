"""The chat page's endpoints: personas, strangers, following, scanning, and bad input."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.personas import persona_openid
from simulator.qr import render_png
from tests.simulator.conftest import MakeSim
from tests.simulator.harness import APPID, Sim

VERIFY_MENU = [
    {"type": "click", "name": "打卡", "key": "CHECKIN"},
    {"type": "scancode_waitmsg", "name": "核验", "key": "VERIFY"},
]


async def stranger(sim: Sim) -> str:
    async with sim.client.post("/sim/chat/stranger") as resp:
        openid: str = (await resp.json())["openid"]
        return openid


async def test_personas_come_with_their_derived_openids(sim: Sim) -> None:
    body = await sim.get("/sim/chat/personas")
    first = body["personas"][0]
    assert first["name"] == "张三"
    assert first["openid"] == persona_openid(APPID, "S001")
    assert len(first["openid"]) == 28
    user = await sim.get("/sim/chat/user", openid=first["openid"])
    assert user["following"] is True
    assert user["persona"]["bind_hint"] == "123456"


async def test_persona_endpoint_failures_are_reported(make_sim: MakeSim) -> None:
    sim = await make_sim()
    sim.bot.personas = [{"name": "no number"}]
    async with sim.client.get("/sim/chat/personas") as resp:
        assert resp.status == 502
        assert "person_no" in (await resp.json())["error"]
    nobody = await make_sim(personas=False)
    assert (await nobody.get("/sim/chat/personas")) == {"personas": []}


async def test_strangers_start_unfollowed_and_can_follow(sim: Sim) -> None:
    openid = await stranger(sim)
    assert openid.startswith("o") and len(openid) == 28
    refused = await sim.chat(openid, 409, type="text", content="hi")
    assert "subscribe first" in refused["error"]
    await sim.chat(openid, type="subscribe")
    callback = sim.bot.callbacks[-1]
    assert callback.message.event == "subscribe"
    assert "<EventKey><![CDATA[]]></EventKey>" in callback.xml
    await sim.chat(openid, 409, type="subscribe")
    await sim.chat(openid, type="text", content="hi")
    await sim.chat(openid, type="unsubscribe")
    assert sim.bot.callbacks[-1].message.event == "unsubscribe"


async def test_verify_button_scans_an_image_the_bot_sent_someone_else(sim: Sim) -> None:
    student, guard = await sim.persona("S001"), await sim.persona("G001")
    await sim.api("menu/create", {"button": VERIFY_MENU})
    await sim.chat(student, type="text", content="code")
    media_id = (await sim.upload(render_png("HC1.pass-token")))["media_id"]
    image = {"touser": student, "msgtype": "image", "image": {"media_id": media_id}}
    assert (await sim.api("message/custom/send", image))["errcode"] == 0
    scannables = await sim.get("/sim/chat/scannables")
    assert scannables["images"][0]["media_id"] == media_id
    assert scannables["images"][0]["name"] == "张三"
    await sim.chat(guard, type="scan", via="button", key="VERIFY", media_id=media_id)
    callback = sim.bot.callbacks[-1]
    assert callback.message.source == guard
    assert callback.message.event == "scancode_waitmsg"
    assert callback.message.scan_type == "qrcode"
    assert callback.message.scan_result == "HC1.pass-token"
    assert callback.message.key == "VERIFY"


async def test_camera_scan_of_a_foreign_code_shows_its_text_and_tells_nobody(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="hi")
    media_id = (await sim.upload(render_png("https://example.org/")))["media_id"]
    before = len(sim.bot.callbacks)
    result = await sim.chat(openid, type="scan", media_id=media_id)
    assert len(sim.bot.callbacks) == before
    assert result["entries"][-1]["code"] == "scan_result"
    assert result["entries"][-1]["text"] == "https://example.org/"


async def test_scanning_an_image_without_a_qr_code_is_refused(sim: Sim) -> None:
    from tests.simulator.test_media import png

    openid = await sim.persona()
    media_id = (await sim.upload(png()))["media_id"]
    body = await sim.chat(openid, 409, type="scan", media_id=media_id)
    assert "no QR code" in body["error"]


async def test_tapped_options_carry_their_menu_id(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="是", menu_id="101")
    assert "<bizmsgmenuid><![CDATA[101]]></bizmsgmenuid>" in sim.bot.callbacks[-1].xml


async def test_msgids_are_unique(sim: Sim) -> None:
    openid = await sim.persona()
    for n in range(3):
        await sim.chat(openid, type="text", content=str(n))
    assert len({c.message.id for c in sim.bot.callbacks}) == 3


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ({"type": "text", "content": ""}, 400, "content"),
        ({"type": "text", "content": "x" * 2001}, 400, "content"),
        ({"type": "dance"}, 400, "unknown type"),
        ({"type": "click"}, 400, "key"),
        ({"type": "scan"}, 400, "media_id"),
        ({"type": "scan", "media_id": "nope"}, 404, "no image"),
        ({"type": "scan", "ticket": "nope"}, 404, "no poster"),
        ({"type": "scan", "via": "door", "ticket": "x"}, 400, "via"),
        ({"type": "text", "content": "x", "menu_id": 1}, 400, "menu_id"),
    ],
)
async def test_bad_sends_get_4xx_with_a_reason(
    sim: Sim, body: dict[str, Any], status: int, reason: str
) -> None:
    openid = await sim.persona()
    assert reason in (await sim.chat(openid, status, **body))["error"]


async def test_unknown_openids_and_broken_bodies(sim: Sim) -> None:
    assert "unknown openid" in (await sim.chat("o-nobody", 404, type="text", content="x"))["error"]
    async with sim.client.post("/sim/chat/send", data=b"{") as resp:
        assert resp.status == 400
    async with sim.client.get("/sim/chat/log", params={"openid": "nobody"}) as resp:
        assert resp.status == 404
    openid = await sim.persona()
    async with sim.client.get("/sim/chat/log", params={"openid": openid, "after": "x"}) as resp:
        assert resp.status == 400
    async with sim.client.get("/sim/chat/events", params={"openid": "nobody"}) as resp:
        assert resp.status == 404
