"""Reply values to WeChat passive-reply XML (wechatpy renders; safe mode encrypts)."""

from __future__ import annotations

import secrets
import time

from wechatpy.replies import ImageReply, TextReply

from bot.replies import Image, Message, Silence, Text
from bot.wechat.security import Cipher, sign

SUCCESS = "success"


def render(message: Message, *, openid: str, account: str) -> str:
    """The plaintext reply body; `success` when there is nothing to say."""
    if isinstance(message, Silence):
        return SUCCESS
    if isinstance(message, Text):
        if not message.content:
            return SUCCESS
        reply = TextReply(source=account, target=openid, content=message.content)
    elif isinstance(message, Image):
        reply = ImageReply(source=account, target=openid, media_id=message.media_id)
    else:  # pragma: no cover - Message is a closed union
        raise TypeError(f"unknown reply {message!r}")
    text: str = reply.render()
    return text


def encrypt_reply(plain: str, cipher: Cipher, token: str, nonce: str | None = None) -> str:
    if plain == SUCCESS:
        return SUCCESS  # "success" is the one body WeChat accepts unencrypted in safe mode
    timestamp = str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**10))
    encrypt = cipher.encrypt(plain)
    signature = sign(token, timestamp, nonce, encrypt)
    return (
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt>"
        f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce><![CDATA[{nonce}]]></Nonce></xml>"
    )
