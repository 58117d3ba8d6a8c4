"""Personal data at rest: authenticated encryption and keyed lookup hashes.

Keys are derived from HEALTHBOT_DATA_KEY. Several keys may be given, separated by commas:
the first encrypts, all decrypt, so a key can be rotated without a flag day.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


class CannotDecrypt(Exception):
    pass


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"healthbot", info=purpose).derive(
        secret.encode()
    )


@dataclass(frozen=True)
class DataVault:
    _fernet: MultiFernet
    _hash_key: bytes

    @classmethod
    def from_setting(cls, data_key: str) -> DataVault:
        secrets = [s.strip() for s in data_key.split(",") if s.strip()]
        if not secrets:
            raise ValueError("HEALTHBOT_DATA_KEY is empty")
        fernets = [Fernet(base64.urlsafe_b64encode(_derive(s, b"encrypt"))) for s in secrets]
        # The lookup hash must stay stable across rotations, so it uses the oldest key.
        return cls(MultiFernet(fernets), _derive(secrets[-1], b"lookup"))

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, token: bytes) -> str:
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken as exc:
            raise CannotDecrypt(
                "personal data cannot be decrypted with the configured keys"
            ) from exc

    def rotate(self, token: bytes) -> bytes:
        """`token` re-encrypted under the first key (CannotDecrypt if no key reads it)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken as exc:
            raise CannotDecrypt(
                "personal data cannot be decrypted with the configured keys"
            ) from exc

    def lookup_hash(self, value: str, kind: str = "id") -> str:
        """A keyed hash for equality lookups and for log-safe references."""
        return hmac.new(self._hash_key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
