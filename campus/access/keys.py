"""The Ed25519 key ring: keys stored encrypted, public halves cached, rotation with overlap.

Every process keeps the keys in memory. A code signed by a key it does not know makes it
reload (at most once per `reload_every` seconds, so forged key ids cannot hammer the
database), and the signing key is re-read every `refresh` seconds, so a rotation done by
`healthbot keys rotate` in another process is picked up without a restart. A rotated key
keeps verifying codes that expire before its `verify_until`: the longest validity plus that
refresh interval, so codes signed by a process that had not noticed the rotation yet still
verify.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus.access.token import Verifier, key_id_for, public_bytes
from campus.secrets import CannotDecrypt, DataVault
from storage.models import PassKey

log = logging.getLogger(__name__)


def record_secret(private_key: Ed25519PrivateKey) -> bytes:
    """The key that names the records of the codes a key signs (campus/access/issued.py):
    derived from the private half, so that only who can sign can vouch for a code."""
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"healthbot", info=b"passcode-record")
    return hkdf.derive(seed)


@dataclass(frozen=True, slots=True)
class VerifyingKey:
    key_id: bytes
    public_key: Ed25519PublicKey
    verify_until: datetime | None  # None: current (not rotated out)
    verifier: Verifier  # the same key, for checking scanned codes (ed25519-zebra)

    def covers(self, expires: int) -> bool:
        """Whether a code of this key expiring at `expires` (Unix s) may still verify."""
        return self.verify_until is None or expires <= self.verify_until.timestamp()


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: bytes
    private_key: Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class KeyInfo:
    kid: str
    created_at: datetime
    retired_at: datetime | None
    verify_until: datetime | None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class KeyRing:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: DataVault,
        *,
        campus: str,
        max_validity: int,
        refresh: float = 60.0,
        reload_every: float = 5.0,
        monotonic: Callable[[], float],
        wall: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self.campus = campus
        self._grace = timedelta(seconds=max_validity + refresh + 60)
        self._refresh = refresh
        self._reload_every = reload_every
        self._mono = monotonic
        self._wall = wall
        self._verifying: dict[bytes, VerifyingKey] = {}
        self._records: dict[bytes, bytes] = {}  # key id → record_secret(its private half)
        self._unreadable: set[bytes] = set()  # rotated keys whose private half is not readable
        self._signing: SigningKey | None = None
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    # -- reading -------------------------------------------------------------------------------

    async def signer(self) -> SigningKey:
        """The key new codes are signed with; the first call on a new campus creates one."""
        if self._stale(self._refresh) or self._signing is None:
            await self._reload(force=True)
        if self._signing is None:
            await self._create_first()
            await self._reload(force=True)
        assert self._signing is not None
        return self._signing

    async def verifier(self, key_id: bytes) -> VerifyingKey | None:
        key = self._verifying.get(key_id)
        if key is None or self._stale(self._refresh):
            # An unknown id may be a key created by another process since the last load.
            await self._reload(force=False)
            key = self._verifying.get(key_id)
        return key

    def record_secret(self, key_id: bytes) -> bytes | None:
        """The key naming the issue records of `key_id`'s codes, if that key is loaded (no
        I/O: the scan's prefetch asks before anything else is read)."""
        return self._records.get(key_id)

    def _stale(self, age: float) -> bool:
        return self._loaded_at is None or self._mono() - self._loaded_at >= age

    async def _reload(self, *, force: bool) -> None:
        async with self._lock:
            if not force and not self._stale(self._reload_every):
                return
            async with self._sessions() as session:
                rows = (
                    await session.execute(
                        select(PassKey).order_by(PassKey.created_at.desc(), PassKey.kid)
                    )
                ).scalars()
                verifying: dict[bytes, VerifyingKey] = {}
                records: dict[bytes, bytes] = {}
                signing: SigningKey | None = None
                now = datetime.fromtimestamp(self._wall(), UTC)
                for row in rows:
                    if row.verify_until is not None and row.verify_until <= now:
                        continue  # no code of it can still be valid
                    key_id = bytes.fromhex(row.kid)
                    public = Ed25519PublicKey.from_public_bytes(row.public_key)
                    verifying[key_id] = VerifyingKey(
                        key_id, public, row.verify_until, Verifier(public)
                    )
                    if signing is None and row.retired_at is None:
                        signing = SigningKey(key_id, self._private(row))
                        records[key_id] = record_secret(signing.private_key)
                    else:
                        try:  # a rotated key: its codes' records, until they expire
                            records[key_id] = record_secret(self._private(row))
                        except (CannotDecrypt, ValueError) as exc:
                            # Its codes are checked by their signatures, as before records.
                            if key_id not in self._unreadable:
                                self._unreadable.add(key_id)
                                log.warning(
                                    "pass key %s: private half unreadable (%s); its codes "
                                    "are checked by their signatures",
                                    row.kid,
                                    type(exc).__name__,
                                )
            self._verifying, self._signing, self._records = verifying, signing, records
            self._loaded_at = self._mono()

    def _private(self, row: PassKey) -> Ed25519PrivateKey:
        raw = base64.b64decode(self._vault.decrypt(row.private_cipher))
        return Ed25519PrivateKey.from_private_bytes(raw)

    # -- writing -------------------------------------------------------------------------------

    def _new_row(self, now: datetime) -> PassKey:
        private = Ed25519PrivateKey.generate()
        raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return PassKey(
            kid=key_id_for(private.public_key()).hex(),
            public_key=public_bytes(private.public_key()),
            private_cipher=self._vault.encrypt(base64.b64encode(raw).decode()),
            created_at=now,
        )

    async def _create_first(self) -> None:
        now = datetime.fromtimestamp(self._wall(), UTC)
        try:
            async with self._sessions.begin() as session:
                existing = (
                    await session.execute(
                        select(PassKey.kid).where(PassKey.retired_at.is_(None)).limit(1)
                    )
                ).first()
                if existing is None:
                    session.add(self._new_row(now))
        except IntegrityError:
            pass  # another process created one at the same moment (or a 1-in-2³² id clash)

    async def rotate(self) -> KeyInfo:
        """Make a new signing key; current keys keep verifying until their codes expire."""
        now = datetime.fromtimestamp(self._wall(), UTC)
        async with self._sessions.begin() as session:
            existing = set((await session.execute(select(PassKey.kid))).scalars())
            row = self._new_row(now)
            while row.kid in existing:  # a 4-byte id: clashes are rare but possible
                row = self._new_row(now)
            await session.execute(
                update(PassKey)
                .where(PassKey.retired_at.is_(None))
                .values(retired_at=now, verify_until=now + self._grace)
            )
            session.add(row)
        await self._reload(force=True)
        return KeyInfo(row.kid, now, None, None)

    async def all_keys(self) -> list[KeyInfo]:
        async with self._sessions() as session:
            rows = (await session.execute(select(PassKey).order_by(PassKey.created_at))).scalars()
            return [KeyInfo(r.kid, r.created_at, r.retired_at, r.verify_until) for r in rows]

    async def jwks(self) -> dict[str, Any]:
        """The public keys that may still verify a code, as a JSON Web Key Set (RFC 8037)."""
        await self._reload(force=True)
        keys = []
        for key in self._verifying.values():
            jwk: dict[str, Any] = {
                "kty": "OKP",
                "crv": "Ed25519",
                "x": _b64url(public_bytes(key.public_key)),
                "kid": key.key_id.hex(),
                "use": "sig",
                "alg": "EdDSA",
            }
            if key.verify_until is not None:
                # Not a registered JWK member: a device must refuse codes of this key that
                # expire later (docs/passcode.md).
                jwk["verify_until"] = int(key.verify_until.timestamp())
            keys.append(jwk)
        return {"campus": self.campus, "token_prefix": "HC1.", "keys": keys}
