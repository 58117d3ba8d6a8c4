"""Reply values to WeChat passive-reply XML (safe mode encrypts).

The XML is WeChat's passive-reply format, as wechatpy's replies render it, built directly:
every reply goes through here, and the field machinery of wechatpy's reply classes cost more
than the rest of the rendering. Unlike them, a `]]>` inside a value cannot end its CDATA
section early (it is split across two).
"""

from __future__ import annotations

import secrets
import time

from bot.replies import Image, Message, Silence, Text
from bot.wechat.security import Cipher, sign

SUCCESS = "success"


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render(message: Message, *, openid: str, account: str) -> str:
    """The plaintext reply body; `success` when there is nothing to say."""
    if isinstance(message, Silence):
        return SUCCESS
    if isinstance(message, Text):
        if not message.content:
            return SUCCESS
        kind, body = "text", f"<Content>{_cdata(message.content)}</Content>"
    elif isinstance(message, Image):
        kind, body = "image", f"<Image><MediaId>{_cdata(message.media_id)}</MediaId></Image>"
    else:  # pragma: no cover - Message is a closed union
        raise TypeError(f"unknown reply {message!r}")
    return (
        f"<xml><ToUserName>{_cdata(openid)}</ToUserName>"
        f"<FromUserName>{_cdata(account)}</FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime>"
        f"<MsgType><![CDATA[{kind}]]></MsgType>{body}</xml>"
    )


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
