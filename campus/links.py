"""Signed, expiring links: a chat reply carries a URL that opens one scoped view for a while.

A link token is `base64url(json payload) . base64url(HMAC-SHA256)`; the payload holds the
link's kind (what it opens: `dashboard`, `trace`, …), its scope (the claims the view needs, e.g.
the person who asked and their units) and its expiry. The key is derived from
HEALTHBOT_DATA_KEY; every key in that setting verifies, the first signs, so links survive a key
rotation for as long as they were valid anyway. Nothing personal goes into a payload: it is
readable by whoever holds the link; only ids and codes do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAX_TOKEN = 2048  # characters; anything longer is refused unread


class BadLink(ValueError):
    """The link is malformed, forged, of another kind, or expired; the message says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "malformed" | "forged" | "wrong_kind" | "expired"


@dataclass(frozen=True, slots=True)
class Link:
    kind: str
    claims: Mapping[str, Any]
    expires_at: datetime  # aware, UTC


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


class LinkSigner:
    def __init__(self, data_key: str) -> None:
        secrets = [s.strip() for s in data_key.split(",") if s.strip()]
        if not secrets:
            raise ValueError("HEALTHBOT_DATA_KEY is empty")
        self._keys = [
            HKDF(algorithm=hashes.SHA256(), length=32, salt=b"healthbot", info=b"links").derive(
                s.encode()
            )
            for s in secrets
        ]

    def sign(self, kind: str, claims: Mapping[str, Any], now: datetime, ttl: timedelta) -> str:
        expires = int((now + ttl).timestamp())
        payload = json.dumps(
            {"k": kind, "c": dict(claims), "e": expires},
            separators=(",", ":"),
            sort_keys=True,
            ensure_ascii=True,
        ).encode()
        return f"{_b64(payload)}.{_b64(self._mac(self._keys[0], payload))}"

    def verify(self, token: str, kind: str, now: datetime) -> Link:
        """The link's claims, or BadLink. Checks signature, then kind, then expiry."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise BadLink("malformed")
        body, dot, mac = token.partition(".")
        if not dot:
            raise BadLink("malformed")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise BadLink("malformed") from None
        if not any(hmac.compare_digest(self._mac(k, payload), given) for k in self._keys):
            raise BadLink("forged")
        try:
            doc = json.loads(payload)
            link_kind, claims, expires = doc["k"], doc["c"], doc["e"]
        except (ValueError, KeyError, TypeError):
            raise BadLink("malformed") from None
        if not isinstance(claims, dict) or not isinstance(expires, int):
            raise BadLink("malformed")
        if link_kind != kind:
            raise BadLink("wrong_kind")
        expires_at = datetime.fromtimestamp(expires, tz=now.tzinfo)
        if now >= expires_at:
            raise BadLink("expired")
        return Link(kind=link_kind, claims=claims, expires_at=expires_at)

    @staticmethod
    def _mac(key: bytes, payload: bytes) -> bytes:
        return hmac.new(key, payload, hashlib.sha256).digest()
