"""Callbacks to the bot: signed and encrypted like WeChat's, replies read back, retries."""

from __future__ import annotations

import asyncio

from wechatpy.replies import ArticlesReply, ImageReply, TextReply

from simulator.phone import UNAVAILABLE
from tests.simulator.conftest import MakeSim
from tests.simulator.harness import Callback, Sim
from tests.simulator.test_media import png


async def test_plain_callback_is_signed_and_its_reply_shown(sim: Sim) -> None:
    openid = await sim.persona()
    result = await sim.chat(openid, type="text", content="你好 <b>&")
    callback = sim.bot.callbacks[-1]
    assert sim.bot.rejected == []
    assert callback.query["openid"] == openid
    assert "encrypt_type" not in callback.query
    message = callback.message
    assert (message.source, message.target) == (openid, sim.state.config.gh_id)
    assert message.content == "你好 <b>&"
    assert message.create_time.timestamp() == int(sim.clock.now)
    user_entry, reply_entry = result["entries"]
    assert user_entry["msg_id"] == message.id
    assert reply_entry == {**reply_entry, "dir": "out", "via": "reply", "text": "echo: 你好 <b>&"}
    assert result["delivery"]["outcome"] == "reply"


async def test_safe_mode_callback_is_encrypted_and_the_reply_decrypted(
    make_sim: MakeSim,
) -> None:
    sim = await make_sim(safe=True)
    openid = await sim.persona()
    result = await sim.chat(openid, type="text", content="加密")
    callback = sim.bot.callbacks[-1]
    # The fake bot verified msg_signature and decrypted with wechatpy's WeChatCrypto.
    assert callback.query["encrypt_type"] == "aes"
    assert "<Encrypt>" in callback.body and "加密" not in callback.body
    assert callback.message.content == "加密"
    assert result["entries"][-1]["text"] == "echo: 加密"


async def test_safe_mode_refuses_a_plaintext_reply(make_sim: MakeSim) -> None:
    sim = await make_sim(safe=True)
    openid = await sim.persona()

    async def plaintext(callback: Callback) -> str:
        return "<xml><MsgType><![CDATA[text]]></MsgType></xml>"

    sim.bot.answer = plaintext
    sim.bot.encrypt_replies = False
    result = await sim.chat(openid, type="text", content="x")
    assert result["delivery"]["outcome"] == "invalid"
    assert result["entries"][-1]["code"] == "unavailable"


async def test_image_and_news_replies(sim: Sim) -> None:
    openid = await sim.persona()
    media_id = (await sim.upload(png()))["media_id"]

    async def image(callback: Callback) -> str:
        return ImageReply(message=callback.message, media_id=media_id).render()

    sim.bot.answer = image
    entry = (await sim.chat(openid, type="text", content="code"))["entries"][-1]
    assert (entry["kind"], entry["media_id"]) == ("image", media_id)

    async def news(callback: Callback) -> str:
        reply = ArticlesReply(message=callback.message)
        reply.add_article({"title": "T", "description": "D", "image": "", "url": "https://x"})
        return reply.render()

    sim.bot.answer = news
    entry = (await sim.chat(openid, type="text", content="news"))["entries"][-1]
    assert entry["articles"] == [
        {"title": "T", "description": "D", "url": "https://x", "picurl": ""}
    ]


async def test_success_and_empty_bodies_mean_no_reply(sim: Sim) -> None:
    openid = await sim.persona()
    for body in ("success", ""):

        async def answer(callback: Callback, body: str = body) -> str:
            return body

        sim.bot.answer = answer
        result = await sim.chat(openid, type="text", content="x")
        assert result["delivery"]["outcome"] == "empty"
        assert [e["dir"] for e in result["entries"]] == ["in"]


async def test_unparseable_reply_shows_unavailable(sim: Sim) -> None:
    openid = await sim.persona()

    async def garbage(callback: Callback) -> str:
        return "<html>oops"

    sim.bot.answer = garbage
    result = await sim.chat(openid, type="text", content="x")
    assert result["delivery"]["outcome"] == "invalid"
    assert result["entries"][-1]["text"] == UNAVAILABLE


async def test_a_slow_bot_gets_retries_with_the_same_msgid(sim: Sim) -> None:
    openid = await sim.persona()
    sim.state.callback.timeout = 0.2
    calls = 0

    async def slow_twice(callback: Callback) -> str:
        nonlocal calls
        calls += 1
        if calls <= 2:
            await asyncio.sleep(0.5)
        return TextReply(message=callback.message, content=f"attempt {calls}").render()

    sim.bot.answer = slow_twice
    result = await sim.chat(openid, type="text", content="retry me")
    await asyncio.sleep(0.4)  # let the abandoned handlers finish before the server closes
    ids = {c.message.id for c in sim.bot.callbacks}
    assert len(sim.bot.callbacks) == 3
    assert len(ids) == 1
    assert result["delivery"]["attempts"] == 3
    assert result["entries"][-1]["text"] == "attempt 3"


async def test_a_bot_that_never_answers_in_time_is_unavailable(sim: Sim) -> None:
    openid = await sim.persona()
    sim.state.callback.timeout = 0.1

    async def too_slow(callback: Callback) -> str:
        await asyncio.sleep(0.3)
        return "success"

    sim.bot.answer = too_slow
    result = await sim.chat(openid, type="text", content="hello?")
    await asyncio.sleep(0.4)
    assert len(sim.bot.callbacks) == 4  # the first try and three retries
    assert result["delivery"]["outcome"] == "failed"
    assert result["entries"][-1] == {
        **result["entries"][-1],
        "dir": "system",
        "code": "unavailable",
        "text": "该公众号暂时无法提供服务，请稍后再试",
    }


async def test_an_unreachable_bot_is_unavailable(make_sim: MakeSim) -> None:
    sim = await make_sim(callback_url="http://127.0.0.1:9/wechat")  # the discard port
    openid = await sim.persona()
    result = await sim.chat(openid, type="text", content="anyone?")
    assert result["delivery"]["outcome"] == "failed"
