"""WeChat's callback signatures and safe-mode AES envelopes (all of the simulator's crypto)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException

from simulator.wire import ReplyError, element_text, parse_xml


def signature(*parts: str) -> str:
    """sha1 over the sorted parts: `signature` (token, timestamp, nonce) and `msg_signature`."""
    joined = "".join(sorted(parts)).encode()
    # SHA-1 is what the protocol specifies; nothing here chooses it.
    return hashlib.sha1(joined, usedforsecurity=False).hexdigest()


def new_nonce() -> str:
    return str(secrets.randbelow(9 * 10**9) + 10**9)


class Envelope:
    """Encrypts callbacks and opens encrypted replies for one account."""

    def __init__(self, token: str, aes_key: str, appid: str) -> None:
        self._token = token
        self._appid = appid
        self._crypto = PrpCrypto(_key_bytes(aes_key))

    def seal(self, xml: str) -> str:
        """The `Encrypt` value for a plaintext message."""
        encrypted: bytes = self._crypto.encrypt(xml, self._appid)
        return encrypted.decode()

    def open_reply(self, body: str) -> str:
        """The plaintext of an encrypted reply, after checking its MsgSignature and AppId."""
        root = parse_xml(body)
        encrypt = element_text(root, "Encrypt")
        if not encrypt:
            raise ReplyError("safe mode needs an encrypted reply, got plaintext")
        expected = signature(
            self._token,
            element_text(root, "TimeStamp"),
            element_text(root, "Nonce"),
            encrypt,
        )
        if not hmac.compare_digest(expected, element_text(root, "MsgSignature")):
            raise ReplyError("reply MsgSignature does not match")
        try:
            plaintext: str = self._crypto.decrypt(encrypt, self._appid)
        except InvalidAppIdException as exc:
            raise ReplyError("reply was encrypted for another AppId") from exc
        except (ValueError, TypeError, IndexError, UnicodeDecodeError) as exc:
            raise ReplyError(f"reply does not decrypt: {exc}") from exc
        return plaintext


def _key_bytes(aes_key: str) -> bytes:
    return base64.b64decode(aes_key + "=")
