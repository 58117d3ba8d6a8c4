"""Temporary media: upload, fetch back, and WeChat's refusals."""

from __future__ import annotations

import io

from PIL import Image

from simulator.media import LIFETIME, MAX_IMAGE_BYTES
from tests.simulator.harness import Sim


def png(size: tuple[int, int] = (8, 8)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_upload_then_get_returns_the_same_bytes(sim: Sim) -> None:
    data = png()
    uploaded = await sim.upload(data)
    assert uploaded["type"] == "image"
    assert uploaded["created_at"] == int(sim.clock.now)
    params = {"access_token": await sim.token(), "media_id": uploaded["media_id"]}
    async with sim.client.get("/sim/api/cgi-bin/media/get", params=params) as resp:
        assert resp.content_type == "image/png"
        assert await resp.read() == data
    async with sim.client.get(f"/sim/media/{uploaded['media_id']}") as resp:
        assert await resp.read() == data


async def test_media_expires_after_three_days(sim: Sim) -> None:
    uploaded = await sim.upload(png())
    sim.clock.advance(LIFETIME)
    body = await sim.api("media/get", media_id=uploaded["media_id"])
    assert body["errcode"] == 40007


async def test_refuses_non_images_oversize_and_bad_requests(sim: Sim) -> None:
    assert (await sim.upload(b"%PDF-1.4 not an image"))["errcode"] == 40005
    assert (await sim.upload(b"\0" * (MAX_IMAGE_BYTES + 1)))["errcode"] == 40009
    token = await sim.token()
    async with sim.client.post(
        "/sim/api/cgi-bin/media/upload",
        params={"access_token": token, "type": "image"},
        data=b"raw",
    ) as resp:
        assert (await resp.json())["errcode"] == 41005
    async with sim.client.post(
        "/sim/api/cgi-bin/media/upload", params={"access_token": token, "type": "pdf"}
    ) as resp:
        assert (await resp.json())["errcode"] == 40004
    assert (await sim.api("media/get", media_id="nope"))["errcode"] == 40007
    assert (await sim.api("media/get"))["errcode"] == 41006
    async with sim.client.get("/sim/media/nope") as resp:
        assert resp.status == 404
