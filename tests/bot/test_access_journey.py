"""The demo end to end through the emulated WeChat (issue 7): a pass code shown on a phone,
a guard's scanner reading it at the gate, and a self check-in at a place poster.

Everything goes the way it would in production: the bot uploads the code's PNG, the
simulator's phone decodes the QR in that image, the guard's VERIFY button exists only
through the conditional menu for the guard tag, and the poster's QR comes from
/cgi-bin/qrcode/create.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from bot.access_admin import make_poster
from bot.demo import create_demo_app, demo_settings, prepare_data_dir
from tests.access_support import decode_qr
from tests.support import AppServer, port_of, reserved_socket


async def _send(client: TestClient[Any, Any], openid: str, **action: Any) -> list[dict[str, Any]]:
    resp = await client.post("/sim/chat/send", json={"openid": openid, **action})
    assert resp.status == 200, await resp.text()
    return list((await resp.json())["entries"])


def _replies(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in entries if e["dir"] == "out"]


async def _menu_keys(client: TestClient[Any, Any], openid: str) -> set[str]:
    body = await (await client.get("/sim/chat/user", params={"openid": openid})).json()
    keys = set()
    for button in (body["menu"] or {}).get("button", []):
        for leaf in button.get("sub_button") or [button]:
            keys.add(leaf.get("key", ""))
    return keys


async def test_code_guard_scan_and_place_check_in(aiohttp_client: Any, tmp_path: Path) -> None:
    sock = reserved_socket()
    port = port_of(sock)
    data = tmp_path / "demo"
    prepare_data_dir(data, fresh=True)
    settings = demo_settings(port, data, safe_mode=False)
    client: TestClient[Any, Any] = await aiohttp_client(
        AppServer(create_demo_app(settings, port), port=port, socket_factory=lambda *_: sock)
    )
    personas = {
        p["person_no"]: p
        for p in (await (await client.get("/sim/chat/personas")).json())["personas"]
    }
    student, guard = personas["S2101001"], personas["G001"]
    for _ in range(100):  # the demo creates its menus once it listens
        if "MY_CODE" in await _menu_keys(client, student["openid"]):
            break
        await asyncio.sleep(0.1)

    for who in (student, guard):
        entries = await _send(
            client,
            who["openid"],
            type="text",
            content=f"绑定 {who['person_no']} {who['bind_hint']}",
        )
        assert "绑定成功" in _replies(entries)[-1]["text"]

    # The student's code: an image the phone can show and a guard can scan.
    entries = await _send(client, student["openid"], type="click", key="MY_CODE")
    (image,) = [e for e in _replies(entries) if e["kind"] == "image"]
    png = await (await client.get(f"/sim/media/{image['media_id']}")).read()
    assert (decode_qr(png) or "").startswith("HC1.")

    # The scanner button is the guards' only once they are tagged: on duty, here.
    assert "VERIFY" not in await _menu_keys(client, guard["openid"])
    entries = await _send(client, guard["openid"], type="text", content="上岗 GATE-N")
    assert "北门" in _replies(entries)[-1]["text"]
    assert "VERIFY" in await _menu_keys(client, guard["openid"])
    assert "VERIFY" not in await _menu_keys(client, student["openid"])

    entries = await _send(
        client,
        guard["openid"],
        type="scan",
        via="button",
        key="VERIFY",
        media_id=image["media_id"],
    )
    verdict = _replies(entries)[-1]["text"]
    assert verdict.startswith("✅") and "张*" in verdict and "学生" in verdict
    assert "张三" not in verdict

    # A place poster: created through the API, scanned with the phone's own camera.
    poster = await make_poster(settings, "CANTEEN-1", tmp_path / "canteen.png")
    assert decode_qr((tmp_path / "canteen.png").read_bytes()) == poster.url
    scannables = await (await client.get("/sim/chat/scannables")).json()
    (ticket,) = [p["ticket"] for p in scannables["posters"] if p["scene"] == "place:CANTEEN-1"]
    entries = await _send(client, student["openid"], type="scan", via="camera", ticket=ticket)
    checked_in = _replies(entries)[-1]["text"]
    assert checked_in.startswith("✅") and "第一食堂" in checked_in

    # Someone new follows by scanning the poster: sent to bind first.
    stranger = (await (await client.post("/sim/chat/stranger")).json())["openid"]
    entries = await _send(client, stranger, type="scan", via="camera", ticket=ticket)
    assert "请先绑定" in _replies(entries)[-1]["text"]
