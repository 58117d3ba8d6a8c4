"""Parametric QR codes: creation rules, the image, and what scanning a poster sends."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from simulator.qr import MAX_EXPIRE
from tests.simulator.harness import Sim


def str_scene(scene: str, action: str = "QR_LIMIT_STR_SCENE", **extra: object) -> dict[str, object]:
    return {"action_name": action, "action_info": {"scene": {"scene_str": scene}}, **extra}


async def show(sim: Sim, ticket: str) -> bytes:
    # aiohttp URL-encodes params: the ticket is base64 with "+" and "/".
    async with sim.client.get("/sim/api/cgi-bin/showqrcode", params={"ticket": ticket}) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        return await resp.read()


async def test_showqrcode_decodes_to_the_ticket_url(sim: Sim) -> None:
    created = await sim.api("qrcode/create", str_scene("place:LIB"))
    assert "expire_seconds" not in created  # permanent
    with Image.open(io.BytesIO(await show(sim, created["ticket"]))) as image:
        decoded = zxingcpp.read_barcode(image)
    assert decoded is not None
    assert decoded.text == created["url"]
    assert sim.state.qr.by_url(created["url"]).scene == "place:LIB"  # type: ignore[union-attr]


async def test_a_permanent_scene_keeps_its_ticket(sim: Sim) -> None:
    first = await sim.api("qrcode/create", str_scene("place:LIB"))
    second = await sim.api("qrcode/create", str_scene("place:LIB"))
    assert first["ticket"] == second["ticket"]


async def test_temporary_codes_expire(sim: Sim) -> None:
    created = await sim.api("qrcode/create", str_scene("x", "QR_STR_SCENE"))
    assert created["expire_seconds"] == 60
    sim.clock.advance(60)
    params = {"ticket": created["ticket"]}
    async with sim.client.get("/sim/api/cgi-bin/showqrcode", params=params) as resp:
        assert resp.status == 404
    longest = await sim.api("qrcode/create", str_scene("y", "QR_STR_SCENE", expire_seconds=10**9))
    assert longest["expire_seconds"] == MAX_EXPIRE


async def test_numeric_scenes(sim: Sim) -> None:
    body = {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 123}}}
    created = await sim.api("qrcode/create", body)
    assert sim.state.qr.by_ticket(created["ticket"]).scene == "123"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "body",
    [
        str_scene(""),
        str_scene("x" * 65),
        {"action_name": "QR_NOPE", "action_info": {"scene": {"scene_str": "a"}}},
        {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100_001}}},
        {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": "1"}}},
        {"action_name": "QR_STR_SCENE"},
    ],
)
async def test_bad_requests_get_40053(sim: Sim, body: dict[str, object]) -> None:
    assert (await sim.api("qrcode/create", body))["errcode"] == 40053


async def test_a_follower_scanning_a_poster_sends_scan_with_the_bare_scene(sim: Sim) -> None:
    openid = await sim.persona()
    created = await sim.api("qrcode/create", str_scene("place:LIB"))
    await sim.chat(openid, type="scan", ticket=created["ticket"])
    message = sim.bot.callbacks[-1].message
    assert message.event == "scan"
    assert message.scene_id == "place:LIB"
    assert message.ticket == created["ticket"]


async def test_a_new_user_scanning_a_poster_follows_with_qrscene(sim: Sim) -> None:
    async with sim.client.post("/sim/chat/stranger") as resp:
        openid = (await resp.json())["openid"]
    created = await sim.api("qrcode/create", str_scene("place:GATE-N"))
    await sim.chat(openid, type="scan", via="camera", ticket=created["ticket"])
    callback = sim.bot.callbacks[-1]
    assert "<EventKey><![CDATA[qrscene_place:GATE-N]]></EventKey>" in callback.xml
    assert callback.message.event == "subscribe_scan"
    assert callback.message.scene_id == "place:GATE-N"
    info = await sim.api("user/info", openid=openid)
    assert info["subscribe"] == 1
    assert info["subscribe_scene"] == "ADD_SCENE_QR_CODE"
    assert info["qr_scene_str"] == "place:GATE-N"
