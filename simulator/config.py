"""Which account the simulator plays and where it finds the bot."""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class SimulatorConfig:
    token: str
    appid: str
    secret: str
    # 43-char EncodingAESKey; when set, callbacks go out in safe mode (encrypt_type=aes).
    aes_key: str | None
    callback_url: str
    personas_url: str | None
    account_name: str = "Healthy Campus"

    def __post_init__(self) -> None:
        if not self.token or not self.appid or not self.secret:
            raise ValueError("token, appid and secret must not be empty")
        if self.aes_key:
            if len(self.aes_key) != 43:
                raise ValueError(f"aes_key must be 43 characters, got {len(self.aes_key)}")
            try:
                key = base64.b64decode(self.aes_key + "=", validate=True)
            except binascii.Error as exc:
                raise ValueError(f"aes_key {self.aes_key!r} is not base64") from exc
            if len(key) != 32:
                raise ValueError("aes_key does not decode to 32 bytes")

    @property
    def safe_mode(self) -> bool:
        return bool(self.aes_key)

    @property
    def gh_id(self) -> str:
        """The account's original id ("gh_" + 12 hex), stable for an appid across restarts."""
        digest = hashlib.sha1(self.appid.encode(), usedforsecurity=False).hexdigest()
        return "gh_" + digest[:12]
