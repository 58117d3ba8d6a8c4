"""The /wechat endpoint: verification, plain and safe modes, and hostile requests."""

from __future__ import annotations

import xmltodict

from bot.clock import FrozenClock
from bot.wechat.security import Cipher, sign
from tests.bot.conftest import MakeBot
from tests.support import AES_KEY, APPID, event_xml, text_xml

# WeChat's published WXBizMsgCrypt sample.
SAMPLE_TOKEN = "spamtest"
SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
SAMPLE_APPID = "wx2c2769f8efd9abc2"
SAMPLE_TIMESTAMP = "1409735669"
SAMPLE_NONCE = "1320562132"
SAMPLE_MSG_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
SAMPLE_SIGNATURE = "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
SAMPLE_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PG"
    "HQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6"
    "tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp"
    "3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhv"
    "Ql+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)


def test_official_sample_signatures() -> None:
    assert sign(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE) == SAMPLE_SIGNATURE
    assert (
        sign(SAMPLE_TOKEN, SAMPLE_TIMESTAMP, SAMPLE_NONCE, SAMPLE_ENCRYPT) == SAMPLE_MSG_SIGNATURE
    )


def test_official_sample_decrypts() -> None:
    plain = Cipher(SAMPLE_KEY, SAMPLE_APPID).decrypt(SAMPLE_ENCRYPT)
    msg = xmltodict.parse(plain)["xml"]
    assert msg["Content"] == "abcdteT"
    assert msg["MsgType"] == "text"


async def test_official_sample_through_the_endpoint(make_bot: MakeBot) -> None:
    clock = FrozenClock(int(SAMPLE_TIMESTAMP))
    wechat = await make_bot(
        clock=clock,
        seed=False,
        wechat_token=SAMPLE_TOKEN,
        wechat_appid=SAMPLE_APPID,
        wechat_aes_key=SAMPLE_KEY,
    )
    params = {
        "timestamp": SAMPLE_TIMESTAMP,
        "nonce": SAMPLE_NONCE,
        "encrypt_type": "aes",
        "msg_signature": SAMPLE_MSG_SIGNATURE,
        "signature": SAMPLE_SIGNATURE,
    }
    body = (
        "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>"
        f"<Encrypt><![CDATA[{SAMPLE_ENCRYPT}]]></Encrypt></xml>"
    )
    resp = await wechat.client.post("/wechat", params=params, data=body)
    assert resp.status == 200
    outer = xmltodict.parse(await resp.text())["xml"]
    assert outer["MsgSignature"] == sign(
        SAMPLE_TOKEN, outer["TimeStamp"], outer["Nonce"], outer["Encrypt"]
    )
    reply = xmltodict.parse(Cipher(SAMPLE_KEY, SAMPLE_APPID).decrypt(outer["Encrypt"]))["xml"]
    assert reply["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    assert "绑定" in reply["Content"]  # an unknown text from a stranger gets the short help

    # The same sample with one character of the signature changed is refused.
    params["msg_signature"] = SAMPLE_MSG_SIGNATURE[:-1] + "0"
    resp = await wechat.client.post("/wechat", params=params, data=body)
    assert resp.status == 403


async def test_get_verification(make_bot: MakeBot) -> None:
    wechat = await make_bot(seed=False)
    params = wechat.params() | {"echostr": "hello123"}
    resp = await wechat.client.get("/wechat", params=params)
    assert resp.status == 200
    assert await resp.text() == "hello123"
    params["signature"] = "0" * 40
    resp = await wechat.client.get("/wechat", params=params)
    assert resp.status == 403


async def test_plain_and_safe_modes_reply(make_bot: MakeBot) -> None:
    wechat = await make_bot(wechat_aes_key=AES_KEY)
    assert "绑定" in await wechat.say("o_stranger", "hello")  # safe mode
    wechat.aes_key = None
    assert "绑定" in await wechat.say("o_stranger", "hello again")  # plain mode still accepted


async def test_compatible_mode_body_carries_both(make_bot: MakeBot) -> None:
    wechat = await make_bot(wechat_aes_key=AES_KEY)
    plain = text_xml("o_compat", "help")
    encrypted = Cipher(AES_KEY, APPID).encrypt(plain)
    body = plain.replace("</xml>", f"<Encrypt>{encrypted}</Encrypt></xml>")
    resp = await wechat.client.post("/wechat", params=wechat.params(encrypted), data=body)
    assert resp.status == 200
    outer = xmltodict.parse(await resp.text())["xml"]
    reply = xmltodict.parse(Cipher(AES_KEY, APPID).decrypt(outer["Encrypt"]))["xml"]
    assert "帮助" in reply["Content"] or "help" in reply["Content"]


async def test_wrong_appid_is_refused(make_bot: MakeBot) -> None:
    wechat = await make_bot(wechat_aes_key=AES_KEY)
    wechat.appid = "wxsomeoneelse00000"
    status, body = await wechat.post(text_xml("o_x", "hi"))
    assert status == 403
    assert "AppId" in body


async def test_safe_mode_without_key_is_a_400(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    wechat.aes_key = AES_KEY
    status, _ = await wechat.post(text_xml("o_x", "hi"))
    assert status == 400


async def test_replayed_timestamp_is_refused(make_bot: MakeBot) -> None:
    clock = FrozenClock(1_800_000_000)
    wechat = await make_bot(clock=clock)
    assert (await wechat.post(text_xml("o_x", "hi")))[0] == 200
    wechat.now = lambda: clock.time() - 301
    assert (await wechat.post(text_xml("o_x", "hi")))[0] == 403
    wechat.now = lambda: clock.time() + 301
    assert (await wechat.post(text_xml("o_x", "hi")))[0] == 403


async def test_bad_signature_is_refused(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    params = wechat.params() | {"signature": "f" * 40}
    resp = await wechat.client.post("/wechat", params=params, data=text_xml("o_x", "hi"))
    assert resp.status == 403
    params.pop("signature")
    resp = await wechat.client.post("/wechat", params=params, data=text_xml("o_x", "hi"))
    assert resp.status == 400
    wechat.token = "not-the-token"
    assert (await wechat.post(text_xml("o_x", "hi")))[0] == 403


async def test_oversized_body_is_413(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    status, _ = await wechat.post(text_xml("o_x", "x" * (256 * 1024 + 10)))
    assert status == 413


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol2;</Content><MsgId>1</MsgId></xml>"""

XXE = """<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


async def test_hostile_bodies_get_4xx_never_500(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    bodies = [
        BILLION_LAUGHS,
        XXE,
        "<xml><ToUserName>gh</ToUserName>",  # truncated
        "not xml at all",
        "<xml><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime></xml>",  # no MsgType
        "<other/>",
        "<xml><FromUserName>o_x</FromUserName><MsgType>text</MsgType>"
        "<CreateTime>abc</CreateTime></xml>",
        "<xml><FromUserName><a>b</a></FromUserName><MsgType>text</MsgType></xml>",
        "   ",
    ]
    for body in bodies:
        status, _ = await wechat.post(body)
        assert 400 <= status < 500, body
    resp = await wechat.client.post("/wechat", params=wechat.params(), data=b"\xff\xfe<xml>")
    assert resp.status == 400
    # Safe mode: garbage in Encrypt.
    wechat_safe = await make_bot(wechat_aes_key=AES_KEY, seed=False)
    for encrypted in ["!!!notbase64", "AAAA", ""]:
        body = f"<xml><Encrypt>{encrypted}</Encrypt></xml>"
        resp = await wechat_safe.client.post(
            "/wechat", params=wechat_safe.params(encrypted), data=body
        )
        assert 400 <= resp.status < 500


async def test_unknown_types_and_events(make_bot: MakeBot) -> None:
    wechat = await make_bot()
    unknown_msg = text_xml("o_x", "hi").replace("<MsgType>text</MsgType>", "<MsgType>foo</MsgType>")
    reply = await wechat.reply(unknown_msg)
    assert reply is not None and "文字" in reply["Content"]  # "only text" + short help
    assert await wechat.reply(event_xml("o_x", "subscribe_msg_popup_event")) is None
    assert await wechat.reply(event_xml("o_x", "TEMPLATESENDJOBFINISH", Status="success")) is None


async def test_healthz_and_metrics(make_bot: MakeBot) -> None:
    wechat = await make_bot(seed=False)
    resp = await wechat.client.get("/healthz")
    assert resp.status == 200
    assert (await resp.json())["database"] == "ok"
    await wechat.say("o_metrics", "hello")
    text = await (await wechat.client.get("/metrics")).text()
    assert "healthbot_callback_requests_total" in text
    assert "healthbot_handler_seconds_bucket" in text


async def test_healthz_reports_a_dead_database(make_bot: MakeBot) -> None:
    # Nothing listens on port 1: the database "is down" from the start.
    wechat = await make_bot(seed=False, database_url="postgresql+asyncpg://u@127.0.0.1:1/none")
    resp = await wechat.client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["database"] == "down"
    # Messages meanwhile get a polite reply, not a 500.
    assert "稍后" in await wechat.say("o_x", "hello")


async def test_a_broken_state_store_gets_a_polite_reply_not_a_500(make_bot: MakeBot) -> None:
    from bot.kv import MemoryKV

    class BrokenKV(MemoryKV):
        async def set(self, *args: object, **kwargs: object) -> bool:
            raise ConnectionError("store is down")

    wechat = await make_bot(kv=BrokenKV(), seed=False)
    status, body = await wechat.post(text_xml("o_x", "hello"))
    assert status == 200
    assert "稍后" in body
