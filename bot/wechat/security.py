"""Callback signatures (constant-time), the replay window, and AES for safe mode."""

from __future__ import annotations

import hashlib
import hmac
import re

from wechatpy.crypto import PrpCrypto
from wechatpy.exceptions import InvalidAppIdException


class CallbackRejected(Exception):
    """A callback that must be refused; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()  # noqa: S324 (WeChat's scheme)


def check_signature(expected_parts: tuple[str, ...], given: str | None, what: str) -> None:
    if not given:
        raise CallbackRejected(400, f"missing {what}")
    if not hmac.compare_digest(sign(*expected_parts).encode(), given.strip().lower().encode()):
        raise CallbackRejected(403, f"bad {what}")


_DIGITS = re.compile(r"^\d{1,12}$")


def check_timestamp(timestamp: str | None, now: float, tolerance: int) -> None:
    if not timestamp or not _DIGITS.match(timestamp):
        raise CallbackRejected(400, "missing or malformed timestamp")
    if abs(int(timestamp) - now) > tolerance:
        raise CallbackRejected(403, "timestamp outside the replay window")


class Cipher:
    """AES-256-CBC as WeChat uses it; wechatpy's PrpCrypto does the block work."""

    def __init__(self, aes_key: str, appid: str) -> None:
        import base64

        self._key = base64.b64decode(aes_key + "=")
        self._appid = appid

    def decrypt(self, encrypted: str) -> str:
        try:
            plain = PrpCrypto(self._key).decrypt(encrypted, self._appid)
        except InvalidAppIdException as exc:
            raise CallbackRejected(403, "message is for another AppId") from exc
        except Exception as exc:  # bad base64, bad padding, short block: all hostile input
            raise CallbackRejected(400, "cannot decrypt Encrypt") from exc
        return plain if isinstance(plain, str) else plain.decode()

    def encrypt(self, plaintext: str) -> str:
        encrypted = PrpCrypto(self._key).encrypt(plaintext, self._appid)
        return encrypted if isinstance(encrypted, str) else encrypted.decode()
