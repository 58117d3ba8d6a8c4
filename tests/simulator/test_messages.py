"""Pushes: customer-service and template messages, the log, the live stream, WeChat's limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from simulator.users import KfLimits
from tests.simulator.harness import Sim
from tests.simulator.test_media import png


def text(openid: str, content: str = "hi") -> dict[str, Any]:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


async def log(sim: Sim, openid: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await sim.get("/sim/chat/log", openid=openid))["entries"]
    return entries


async def test_custom_text_appears_in_the_log_and_the_stream(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="你好")  # opens the 48-hour window
    async with sim.client.get("/sim/chat/events", params={"openid": openid}) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        replayed = [await next_event(stream) for _ in range(2)]
        assert [e["text"] for e in replayed] == ["你好", "echo: 你好"]
        assert (await sim.api("message/custom/send", text(openid, "推送")))["errcode"] == 0
        pushed = await next_event(stream)
    assert (pushed["dir"], pushed["via"], pushed["text"]) == ("out", "custom", "推送")
    assert (await log(sim, openid))[-1] == pushed


async def next_event(stream: Any) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            line = (await stream.content.readline()).decode()
            if line.startswith("data: "):
                result: dict[str, Any] = json.loads(line[6:])
                return result


async def test_the_stream_replays_after_the_last_event_id(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="one")
    first_id = (await log(sim, openid))[0]["id"]
    headers = {"Last-Event-ID": str(first_id)}
    async with sim.client.get(
        "/sim/chat/events", params={"openid": openid}, headers=headers
    ) as stream:
        assert (await next_event(stream))["text"] == "echo: one"


async def test_image_and_news_pushes(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="hi")
    media_id = (await sim.upload(png()))["media_id"]
    image = {"touser": openid, "msgtype": "image", "image": {"media_id": media_id}}
    assert (await sim.api("message/custom/send", image))["errcode"] == 0
    article = {"title": "T", "description": "D", "url": "https://e.x", "picurl": ""}
    news = {"touser": openid, "msgtype": "news", "news": {"articles": [article]}}
    assert (await sim.api("message/custom/send", news))["errcode"] == 0
    entries = await log(sim, openid)
    assert entries[-2]["media_id"] == media_id
    assert entries[-1]["articles"][0]["title"] == "T"
    bad_image = {**image, "image": {"media_id": "nope"}}
    assert (await sim.api("message/custom/send", bad_image))["errcode"] == 40007
    two = {**news, "news": {"articles": [article, article]}}
    assert (await sim.api("message/custom/send", two))["errcode"] == 45008


async def test_custom_send_errors(sim: Sim) -> None:
    openid = await sim.persona()
    assert (await sim.api("message/custom/send", text("o-nobody")))["errcode"] == 40003
    assert (await sim.api("message/custom/send", text(openid)))["errcode"] == 45015
    await sim.chat(openid, type="text", content="hi")
    assert (await sim.api("message/custom/send", text(openid, "")))["errcode"] == 44004
    wrong_type = {"touser": openid, "msgtype": "voice", "voice": {}}
    assert (await sim.api("message/custom/send", wrong_type))["errcode"] == 40008
    await sim.chat(openid, type="unsubscribe")
    assert (await sim.api("message/custom/send", text(openid)))["errcode"] == 43004
    async with sim.client.post(
        "/sim/api/cgi-bin/message/custom/send",
        params={"access_token": await sim.token()},
        data=b"{not json",
    ) as resp:
        assert (await resp.json())["errcode"] == 47001


async def test_45015_once_48_hours_have_passed(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="hi")
    sim.clock.advance(48 * 3600 - 1)
    assert (await sim.api("message/custom/send", text(openid)))["errcode"] == 0
    sim.clock.advance(1)
    assert (await sim.api("message/custom/send", text(openid)))["errcode"] == 45015


async def test_45047_after_five_pushes_per_message_and_three_per_tap(sim: Sim) -> None:
    openid = await sim.persona()
    await sim.chat(openid, type="text", content="hi")
    codes = [(await sim.api("message/custom/send", text(openid)))["errcode"] for _ in range(6)]
    assert codes == [0, 0, 0, 0, 0, 45047]
    await sim.api("menu/create", {"button": [{"type": "click", "name": "a", "key": "A"}]})
    await sim.chat(openid, type="click", key="A")
    codes = [(await sim.api("message/custom/send", text(openid)))["errcode"] for _ in range(4)]
    assert codes == [0, 0, 0, 45047]
    sim.state.users.kf_limits = KfLimits(message_quota=None, event_quota=None)
    await sim.chat(openid, type="text", content="again")
    codes = [(await sim.api("message/custom/send", text(openid)))["errcode"] for _ in range(8)]
    assert set(codes) == {0}


async def test_template_send_logs_a_card_and_reports_back(sim: Sim) -> None:
    openid = await sim.persona()
    body = {
        "touser": openid,
        "template_id": "TPL_WARN",
        "url": "https://example.edu/w",
        "data": {"first": {"value": "提醒"}, "keyword1": {"value": "张三"}},
        "client_msg_id": "warn-1",
    }
    sent = await sim.api("message/template/send", body)
    assert sent["errcode"] == 0
    again = await sim.api("message/template/send", body)  # same client_msg_id: sent once
    assert again["msgid"] == sent["msgid"]
    entries = await log(sim, openid)
    assert len(entries) == 1
    assert entries[0]["kind"] == "template"
    assert entries[0]["fields"] == [
        {"name": "first", "value": "提醒"},
        {"name": "keyword1", "value": "张三"},
    ]
    await sim.state.settle()
    report = sim.bot.callbacks[-1]
    assert report.message.event == "templatesendjobfinish"
    assert f"<MsgID>{sent['msgid']}</MsgID>" in report.xml
    assert report.message.status == "success"


async def test_template_send_errors(sim: Sim) -> None:
    openid = await sim.persona()
    base = {"touser": openid, "template_id": "T", "data": {"a": {"value": "x"}}}
    assert (await sim.api("message/template/send", {**base, "template_id": ""}))["errcode"] == 40037
    assert (await sim.api("message/template/send", {**base, "data": {"a": 1}}))["errcode"] == 47001
    assert (await sim.api("message/template/send", {**base, "touser": "x"}))["errcode"] == 40003


async def test_user_info(sim: Sim) -> None:
    openid = await sim.persona()
    info = await sim.api("user/info", openid=openid)
    assert info["subscribe"] == 1
    assert info["openid"] == openid
    assert "nickname" not in info
    assert (await sim.api("user/info", openid="o-nobody"))["errcode"] == 40003
    await sim.chat(openid, type="unsubscribe")
    assert await sim.api("user/info", openid=openid) == {"subscribe": 0, "openid": openid}


async def test_streams_end_when_the_simulator_stops(sim: Sim) -> None:
    openid = await sim.persona()
    async with sim.client.get("/sim/chat/events", params={"openid": openid}) as stream:
        sim.state.log.notify_all("close")  # what shutdown does
        async with asyncio.timeout(5):
            rest = await stream.content.read()
    assert rest.startswith(b"retry:")


async def test_menu_changes_are_announced_on_the_stream(sim: Sim) -> None:
    openid = await sim.persona()
    async with sim.client.get("/sim/chat/events", params={"openid": openid}) as stream:
        await stream.content.readline()  # the retry hint
        await sim.api("menu/create", {"button": [{"type": "click", "name": "a", "key": "A"}]})
        async with asyncio.timeout(5):
            while (line := await stream.content.readline()) == b"\n":
                pass
    assert line == b"event: menu\n"
