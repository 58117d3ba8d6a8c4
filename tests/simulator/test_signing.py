"""Signatures and AES against WeChat's published sample values."""

from __future__ import annotations

import pytest
from wechatpy.crypto import WeChatCrypto

from simulator.signing import Envelope, signature
from simulator.wire import ReplyError
from tests.simulator.harness import AES_KEY, APPID, TOKEN

TIMESTAMP, NONCE = "1409735669", "1320562132"


def test_plain_signature_matches_the_official_sample() -> None:
    assert signature(TOKEN, TIMESTAMP, NONCE) == "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"


def test_sealed_messages_open_with_wechatpy() -> None:
    envelope = Envelope(TOKEN, AES_KEY, APPID)
    encrypted = envelope.seal("<xml><Content>abcdteT</Content></xml>")
    msg_signature = signature(TOKEN, TIMESTAMP, NONCE, encrypted)
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
    plain = WeChatCrypto(TOKEN, AES_KEY, APPID).decrypt_message(
        body, msg_signature, TIMESTAMP, NONCE
    )
    assert plain == "<xml><Content>abcdteT</Content></xml>"


def test_replies_are_checked_before_they_are_opened() -> None:
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    reply = crypto.encrypt_message("<xml><MsgType>text</MsgType></xml>", NONCE, TIMESTAMP)
    assert Envelope(TOKEN, AES_KEY, APPID).open_reply(reply) == (
        "<xml><MsgType>text</MsgType></xml>"
    )
    with pytest.raises(ReplyError, match="MsgSignature"):
        Envelope("other-token", AES_KEY, APPID).open_reply(reply)
    with pytest.raises(ReplyError, match="AppId"):
        Envelope(TOKEN, AES_KEY, "wx-other").open_reply(reply)
    with pytest.raises(ReplyError, match="plaintext"):
        Envelope(TOKEN, AES_KEY, APPID).open_reply("<xml><MsgType>text</MsgType></xml>")
