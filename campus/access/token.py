"""The pass-code token of docs/passcode.md: packing, signing and checking (no I/O, no clock).

    HC1.<base64url(payload ‖ signature)>      114 characters in all

payload (18 bytes, big-endian): version u8 · key id 4 bytes · person u32 · status u8 ·
issued u32 · expires u32 (Unix seconds). The Ed25519 signature covers
`b"HC1\\0" + campus + b"\\0" + payload`, so a code signed for another campus never verifies
here even with the same key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from ed25519_zebra import ed_verify as _zebra_verify

PREFIX = "HC1."
VERSION = 1
KEY_ID_BYTES = 4
SIGNATURE_BYTES = 64
_PAYLOAD = struct.Struct(">B4sIBII")
PAYLOAD_BYTES = _PAYLOAD.size  # 18
TOKEN_BYTES = PAYLOAD_BYTES + SIGNATURE_BYTES  # 82
TOKEN_CHARS = len(PREFIX) + (TOKEN_BYTES * 4 + 2) // 3  # 114: base64url without padding
MAX_PERSON_ID = 2**32 - 1
MAX_VALIDITY = 24 * 3600
STATUSES = ("green", "yellow", "red")  # the status byte is the index
_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_LAST_CHARS = (b"A", b"Q", b"g", b"w")  # 2 bits of the last byte, then 4 zero bits


class Problem(Enum):
    """Why a token was refused; only EXPIRED may be told apart by a guard."""

    MALFORMED = "malformed"  # not a pass code at all, truncated, wrong version
    UNKNOWN_KEY = "unknown_key"  # not signed by a key of this campus
    BAD_SIGNATURE = "bad_signature"  # forged or tampered with
    RETIRED_KEY = "retired_key"  # signed by a key rotated out before this code's expiry
    NOT_YET_VALID = "not_yet_valid"  # issued in the future (beyond the allowed clock skew)
    EXPIRED = "expired"


class TokenRejected(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class PassClaims:
    key_id: bytes
    person_id: int
    status: str
    issued: int  # Unix seconds
    expires: int
    version: int = VERSION

    def __post_init__(self) -> None:
        if len(self.key_id) != KEY_ID_BYTES:
            raise ValueError(f"key id {self.key_id.hex()!r} is not {KEY_ID_BYTES} bytes")
        if not 0 < self.person_id <= MAX_PERSON_ID:
            raise ValueError(f"person id {self.person_id} out of 1–{MAX_PERSON_ID}")
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if not 0 < self.expires - self.issued <= MAX_VALIDITY:
            raise ValueError(f"validity {self.expires - self.issued} s out of 1–{MAX_VALIDITY}")

    def pack(self) -> bytes:
        return _PAYLOAD.pack(
            self.version,
            self.key_id,
            self.person_id,
            STATUSES.index(self.status),
            self.issued,
            self.expires,
        )


def key_id_for(public_key: Ed25519PublicKey) -> bytes:
    """The key id: the first 4 bytes of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_bytes(public_key)).digest()[:KEY_ID_BYTES]


def public_bytes(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def signed_message(campus: str, payload: bytes) -> bytes:
    if "\0" in campus or not campus:
        raise ValueError(f"campus {campus!r} must be non-empty and without NUL")
    return b"HC1\0" + campus.encode() + b"\0" + payload


def sign(claims: PassClaims, private_key: Ed25519PrivateKey, campus: str) -> str:
    payload = claims.pack()
    signature = private_key.sign(signed_message(campus, payload))
    body = base64.urlsafe_b64encode(payload + signature).rstrip(b"=").decode()
    return PREFIX + body


@dataclass(frozen=True, slots=True)
class Unverified:
    """A token's fields before the signature is checked: nothing here may be trusted yet."""

    claims: PassClaims
    payload: bytes
    signature: bytes


def parse(token: str) -> Unverified:
    """Split a token into its fields; raise TokenRejected(MALFORMED) for anything else."""
    token = token.strip()
    if len(token) != TOKEN_CHARS or not token.startswith(PREFIX):
        raise TokenRejected(Problem.MALFORMED)
    body = token[len(PREFIX) :].encode("ascii", "replace")
    if not _ALPHABET.issuperset(body):
        raise TokenRejected(Problem.MALFORMED)
    try:
        raw = base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise TokenRejected(Problem.MALFORMED) from None
    if len(raw) != TOKEN_BYTES or not body.endswith(_LAST_CHARS):
        # The last character carries 4 unused bits, which must be 0: one string per code.
        raise TokenRejected(Problem.MALFORMED)
    payload, signature = raw[:PAYLOAD_BYTES], raw[PAYLOAD_BYTES:]
    version, key_id, person_id, status, issued, expires = _PAYLOAD.unpack(payload)
    if version != VERSION or status >= len(STATUSES):
        raise TokenRejected(Problem.MALFORMED)
    try:
        claims = PassClaims(key_id, person_id, STATUSES[status], issued, expires, version)
    except ValueError:
        raise TokenRejected(Problem.MALFORMED) from None
    return Unverified(claims, payload, signature)


# libsodium's checks on a point's encoding, which ed25519-zebra does not make (`Verifier`):
# the y coordinate must be below p (RFC 8032's canonical encoding), and not that of one of
# the points of small order (libsodium's own list; RFC 8032 does not ask for it).
_P = 2**255 - 19
_Y_BITS = 2**255 - 1  # the top bit is x's sign
_Y_ORDER_8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
_SMALL_ORDER_Y = frozenset({0, 1, _P - 1, _Y_ORDER_8, _P - _Y_ORDER_8})  # all 8, either sign


def _refused_point(encoded: bytes) -> bool:
    """A non-canonical encoding, or a point of small order (libsodium's two byte checks)."""
    y = int.from_bytes(encoded, "little") & _Y_BITS
    return y >= _P or y in _SMALL_ORDER_Y


class Verifier:
    """A public key ready to check signatures at the gate, built once per key.

    Keys are made, stored, used for signing and exported with `cryptography` (OpenSSL); a
    gate checks a signature per scan, and that is ed25519-zebra's (Rust, curve25519-dalek,
    which uses AVX2 where the CPU has it): two thirds of libsodium's time on the benchmark
    machine, a third of OpenSSL's (bench/README.md).

    ed25519-zebra checks by ZIP 215's rules: libsodium's less two byte checks, which are
    made here first (R and A canonical, and not of small order), and with the cofactor in
    the equation. So it also accepts an R that is a valid nonce point plus a point of small
    order, and a key A with such a part. Only the key's holder can make such a signature
    (s must still be r + k·a), and this campus makes its keys (A = a·B, never imported) and
    signs by RFC 8032 (R = r·B): the two judge alike every code it issues and every code
    anybody else can make (tests/campus/test_access_signature.py). The scalar s must be
    below the group order under both rules, so a signature cannot be altered.
    """

    __slots__ = ("_usable", "raw")

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self.raw = public_bytes(public_key)  # always 32 bytes
        self._usable = not _refused_point(self.raw)  # else it verifies nothing, as libsodium

    def verify(self, signature: bytes, message: bytes) -> bool:
        if len(signature) != SIGNATURE_BYTES or not self._usable:
            return False
        if _refused_point(signature[:32]):
            return False
        return bool(_zebra_verify(bytes(signature), bytes(message), self.raw))


def check_signature(token: Unverified, key: Verifier | Ed25519PublicKey, campus: str) -> None:
    verifier = key if isinstance(key, Verifier) else Verifier(key)
    if not verifier.verify(token.signature, signed_message(campus, token.payload)):
        raise TokenRejected(Problem.BAD_SIGNATURE)


def check_time(claims: PassClaims, now: float, skew: int) -> None:
    """Expired at `expires` exactly; a code from up to `skew` seconds ahead is accepted."""
    if claims.issued > now + skew:
        raise TokenRejected(Problem.NOT_YET_VALID)
    if now >= claims.expires:
        raise TokenRejected(Problem.EXPIRED)
