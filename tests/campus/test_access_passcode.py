"""Pass-code tokens and the key ring: what verifies and everything that must not (issue 7).

Every verification test runs twice: checking signatures only, and with issued codes on
record (campus/access/issued.py) and the record read as a guard's scan reads it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from campus.access import token as tk
from campus.access.issued import IssuedCodes
from campus.access.keys import KeyRing, record_secret
from campus.access.passes import Holder, IssuedPass, NoCode, PassService
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import PassKey
from tests.support import DATA_KEY

CAMPUS = "wx1234567890abcdef"
NOW = 1_800_000_000.0
TODAY = __import__("datetime").date(2027, 1, 15)


@dataclass
class World:
    sessions: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    passes: PassService
    kv: MemoryKV | None = None  # where issued codes are on record; None: not recorded

    def issued(self, ring: KeyRing) -> IssuedCodes | None:
        """Where `ring`'s codes go on record, if codes are recorded in this world."""
        if self.kv is None:
            return None
        return IssuedCodes(self.kv, Keyspace(CAMPUS), ring)

    async def verify(self, token: str) -> tk.PassClaims:
        """As a guard's scan: the code's record read first (when codes are recorded)."""
        key = self.passes.record_key(token)
        if key is None or self.kv is None:
            return await self.passes.verify(token)
        return await self.passes.verify(token, {key: await self.kv.get(key)})

    def ring(self, campus: str = CAMPUS, validity: int = 600) -> KeyRing:
        return KeyRing(
            self.sessions,
            DataVault.from_setting(DATA_KEY),
            campus=campus,
            max_validity=validity,
            monotonic=self.clock.monotonic,
            wall=self.clock.time,
        )


async def _world(url: str, recorded: bool = False) -> AsyncIterator[World]:
    engine: AsyncEngine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    clock = FrozenClock(NOW)
    world = World(sessions, clock, None, MemoryKV(clock.monotonic) if recorded else None)  # type: ignore[arg-type]
    ring = world.ring()
    world.passes = PassService(sessions, ring, clock, validity=600, issued=world.issued(ring))
    yield world
    await engine.dispose()


@pytest.fixture(params=["signature", "recorded"])
async def world(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[World]:
    async for w in _world(f"sqlite+aiosqlite:///{tmp_path}/keys.db", request.param == "recorded"):
        yield w


def _holder(status: str = "green", state: str = "active") -> Holder:
    return Holder(42, "张三丰", status, state, None)


async def _issue(world: World, status: str = "green") -> IssuedPass:
    issued = await world.passes.issue(_holder(status), TODAY)
    assert isinstance(issued, IssuedPass)
    return issued


async def _rejected(world: World, token: str) -> tk.Problem:
    with pytest.raises(tk.TokenRejected) as caught:
        await world.verify(token)
    return caught.value.problem


# -- the format ----------------------------------------------------------------------------


def test_the_token_is_compact_and_byte_exact() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    kid = tk.key_id_for(key.public_key())
    claims = tk.PassClaims(kid, 7, "yellow", 1_800_000_000, 1_800_000_600)
    token = tk.sign(claims, key, CAMPUS)
    assert token.startswith("HC1.") and len(token) == tk.TOKEN_CHARS == 114
    raw = base64.urlsafe_b64decode(token[4:] + "==")
    assert raw[:18] == b"\x01" + kid + struct.pack(">IBII", 7, 1, 1_800_000_000, 1_800_000_600)
    # The signature covers the campus: verifiable with nothing but the public key.
    key.public_key().verify(raw[18:], b"HC1\0" + CAMPUS.encode() + b"\0" + raw[:18])
    parsed = tk.parse(token)
    assert parsed.claims == claims


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_anything_else_is_malformed_never_a_crash(text: str) -> None:
    with pytest.raises(tk.TokenRejected) as caught:
        tk.parse(text)
    assert caught.value.problem is tk.Problem.MALFORMED


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=82, max_size=82))
def test_random_bytes_with_the_prefix_never_verify(raw: bytes) -> None:
    key = Ed25519PrivateKey.generate()
    token = "HC1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    try:
        parsed = tk.parse(token)
    except tk.TokenRejected:
        return
    with pytest.raises(tk.TokenRejected):
        tk.check_signature(parsed, key.public_key(), CAMPUS)


def test_claims_refuse_nonsense() -> None:
    kid = b"\0\0\0\1"
    for bad in (
        dict(key_id=b"\0", person_id=1, status="green", issued=1, expires=2),
        dict(key_id=kid, person_id=0, status="green", issued=1, expires=2),
        dict(key_id=kid, person_id=2**32, status="green", issued=1, expires=2),
        dict(key_id=kid, person_id=1, status="blue", issued=1, expires=2),
        dict(key_id=kid, person_id=1, status="green", issued=5, expires=5),
        dict(key_id=kid, person_id=1, status="green", issued=0, expires=90_000),
    ):
        with pytest.raises(ValueError):
            tk.PassClaims(**bad)  # type: ignore[arg-type]


# -- verification --------------------------------------------------------------------------


async def test_a_fresh_code_verifies(world: World) -> None:
    issued = await _issue(world)
    claims = await world.verify(issued.token)
    assert claims == issued.claims
    assert (claims.person_id, claims.status, claims.expires - claims.issued) == (42, "green", 600)


async def test_forged_tampered_truncated(world: World) -> None:
    token = (await _issue(world)).token
    raw = bytearray(base64.urlsafe_b64decode(token[4:] + "=="))

    def again(data: bytes) -> str:
        return "HC1." + base64.urlsafe_b64encode(bytes(data)).rstrip(b"=").decode()

    # Tampered: promote someone else, or change the status, or stretch the expiry.
    for offset, value in ((8, 43), (9, 0), (17, 0xFF)):
        changed = bytearray(raw)
        changed[offset] = value if changed[offset] != value else value ^ 1
        assert await _rejected(world, again(changed)) is tk.Problem.BAD_SIGNATURE
    # Forged: a well-formed code signed by some key claiming our key id.
    forger = Ed25519PrivateKey.generate()
    payload = bytes(raw[:18])
    forged = again(payload + forger.sign(b"HC1\0" + CAMPUS.encode() + b"\0" + payload))
    assert await _rejected(world, forged) is tk.Problem.BAD_SIGNATURE
    # Truncated, padded, re-prefixed, or lower-cased.
    for bad in (token[:-1], token[:60], token + "A", "HC2." + token[4:], token.lower(), ""):
        assert await _rejected(world, bad) is tk.Problem.MALFORMED


async def test_expired_and_from_the_future(world: World) -> None:
    token = (await _issue(world)).token
    world.clock.advance(599)
    await world.verify(token)
    world.clock.advance(1)
    assert await _rejected(world, token) is tk.Problem.EXPIRED
    world.clock.advance(-600 - 120)
    assert await _rejected(world, token) is tk.Problem.NOT_YET_VALID


async def test_unknown_and_other_campus_keys(world: World, tmp_path: Path) -> None:
    # Another campus, its own database and keys.
    async for other in _world(f"sqlite+aiosqlite:///{tmp_path}/other.db"):
        other.passes = PassService(
            other.sessions, other.ring(campus="wxOTHERCAMPUS000"), other.clock, validity=600
        )
        foreign = (await _issue(other)).token
        assert await _rejected(world, foreign) is tk.Problem.UNKNOWN_KEY
    # The same key used for another campus still does not verify here.
    signer = await world.passes.keys.signer()
    claims = tk.PassClaims(signer.key_id, 42, "green", int(NOW), int(NOW) + 600)
    elsewhere = tk.sign(claims, signer.private_key, "wxOTHERCAMPUS000")
    assert await _rejected(world, elsewhere) is tk.Problem.BAD_SIGNATURE
    # A made-up key id.
    made_up = tk.PassClaims(b"\xde\xad\xbe\xef", 42, "green", int(NOW), int(NOW) + 600)
    assert (
        await _rejected(world, tk.sign(made_up, Ed25519PrivateKey.generate(), CAMPUS))
        is tk.Problem.UNKNOWN_KEY
    )


async def test_the_private_key_is_stored_encrypted(world: World) -> None:
    signer = await world.passes.keys.signer()
    async with world.sessions() as s:
        (row,) = (await s.execute(select(PassKey))).scalars()
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    raw = signer.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert raw not in row.private_cipher and base64.b64encode(raw) not in row.private_cipher
    assert row.kid == signer.key_id.hex() and len(row.public_key) == 32


async def test_rotated_keys_verify_until_their_codes_expire(world: World) -> None:
    old = await _issue(world)
    async with world.sessions() as s:
        row = (await s.execute(select(PassKey))).scalar_one()
    old_private = world.passes.keys._private(row)
    new_key = await world.passes.keys.rotate()
    assert new_key.kid != old.claims.key_id.hex()
    fresh = await _issue(world)
    assert fresh.claims.key_id.hex() == new_key.kid
    await world.verify(old.token)  # still within its validity
    await world.verify(fresh.token)

    def by_old_key(issued_at: float) -> str:
        at = int(issued_at)
        claims = tk.PassClaims(old.claims.key_id, 42, "green", at, at + 600)
        return tk.sign(claims, old_private, CAMPUS)

    # A process that has not noticed the rotation yet (it re-reads keys every 60 s) still
    # signs with the old key: those codes verify.
    world.clock.advance(50)
    await world.verify(by_old_key(world.clock.time()))
    # Codes of the old key expiring after the overlap do not.
    world.clock.advance(200)
    assert await _rejected(world, by_old_key(world.clock.time())) is tk.Problem.RETIRED_KEY
    # Once no code of it can be valid, the old key is gone from the ring.
    world.clock.advance(600)
    assert await _rejected(world, old.token) is tk.Problem.UNKNOWN_KEY


async def test_a_new_key_from_another_process_is_picked_up(world: World) -> None:
    await _issue(world)
    elsewhere = world.ring()
    await elsewhere.rotate()  # `healthbot keys rotate` in another process
    code = await PassService(
        world.sessions, elsewhere, world.clock, validity=600, issued=world.issued(elsewhere)
    ).issue(_holder(), TODAY)
    assert isinstance(code, IssuedPass)
    world.clock.advance(6)  # beyond the reload throttle
    await world.verify(code.token)
    world.clock.advance(60)  # and the signer follows within the refresh interval
    assert (await _issue(world)).claims.key_id == code.claims.key_id


async def test_jwks_lets_a_device_verify_offline(world: World) -> None:
    first = await _issue(world)
    await world.passes.keys.rotate()
    second = await _issue(world)
    jwks = await world.passes.keys.jwks()
    assert jwks["campus"] == CAMPUS
    by_kid = {k["kid"]: k for k in jwks["keys"]}
    assert set(by_kid) == {first.claims.key_id.hex(), second.claims.key_id.hex()}
    assert "verify_until" in by_kid[first.claims.key_id.hex()]
    for issued in (first, second):
        jwk = by_kid[issued.claims.key_id.hex()]
        assert (jwk["kty"], jwk["crv"], jwk["alg"]) == ("OKP", "Ed25519", "EdDSA")
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "="))
        tk.check_signature(tk.parse(issued.token), public, jwks["campus"])


async def test_who_gets_no_code(world: World) -> None:
    assert await world.passes.issue(_holder(state="left"), TODAY) is NoCode.INACTIVE
    assert await world.passes.issue(_holder(state="expired"), TODAY) is NoCode.INACTIVE
    assert await world.passes.issue(_holder(state="pending"), TODAY) is NoCode.PENDING
    expired = Holder(42, "x", "green", "active", TODAY.replace(day=14))
    assert await world.passes.issue(expired, TODAY) is NoCode.INACTIVE
    red = await _issue(world, "red")  # a red person gets a (red) code: the gate decides
    assert red.claims.status == "red"


# -- codes on record (campus/access/issued.py) --------------------------------------------


@pytest.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[World]:
    async for w in _world(f"sqlite+aiosqlite:///{tmp_path}/keys.db", recorded=True):
        yield w


def _no_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every signature check refuse, and count them."""
    checked: list[str] = []

    def refuse(*args: object) -> None:
        checked.append("signature")
        raise tk.TokenRejected(tk.Problem.BAD_SIGNATURE)

    monkeypatch.setattr("campus.access.passes.check_signature", refuse)
    return checked


async def test_a_code_on_record_is_recognised_without_its_signature(
    recorded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await _issue(recorded)
    key = recorded.passes.record_key(issued.token)
    assert key is not None and key.startswith(f"hc:{CAMPUS}:code:")
    assert recorded.kv is not None and await recorded.kv.get(key) == b"42"
    assert issued.token.encode() not in repr(recorded.kv._data).encode()  # no code's text
    checked = _no_signature_checks(monkeypatch)
    assert await recorded.verify(issued.token) == issued.claims
    assert await recorded.verify(f"  {issued.token}\n") == issued.claims  # as scanned
    assert checked == []
    # Without the record read (another path), or once it is gone, the signature decides.
    with pytest.raises(tk.TokenRejected):
        await recorded.passes.verify(issued.token)
    await recorded.kv.delete(key)
    assert await _rejected(recorded, issued.token) is tk.Problem.BAD_SIGNATURE
    assert checked == ["signature", "signature"]


async def test_a_record_vouches_only_for_its_own_text_and_person(
    recorded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = await _issue(recorded)
    assert recorded.kv is not None
    raw = bytearray(base64.urlsafe_b64decode(issued.token[4:] + "=="))
    raw[8] ^= 1  # another person
    tampered = "HC1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    # Somebody who can write to the store, but has not the signing key's private half,
    # plants records for the tampered code: named with the data key's lookup hash (which
    # a leaked configuration file holds), and with another private key's record secret.
    vault = DataVault.from_setting(DATA_KEY)
    by_data_key = (
        f"hc:{CAMPUS}:code:"
        + base64.urlsafe_b64encode(
            bytes.fromhex(vault.lookup_hash(tampered, "passcode"))[:18]
        ).decode()
    )  # the first naming (712d57b), which took the data key alone
    other = record_secret(Ed25519PrivateKey.generate())
    other_tag = hashlib.blake2b(tampered.encode(), key=other, digest_size=18).hexdigest()
    by_other_key = f"hc:{CAMPUS}:code:{other_tag}"
    genuine_name = recorded.passes.record_key(tampered)
    assert genuine_name is not None and genuine_name not in (by_data_key, by_other_key)
    signer = await recorded.passes.keys.signer()
    own_tag = hashlib.blake2b(
        tampered.encode(), key=record_secret(signer.private_key), digest_size=18
    ).hexdigest()
    assert genuine_name == f"hc:{CAMPUS}:code:{own_tag}"  # the same recipe, the right key
    for planted in (by_data_key, by_other_key):
        await recorded.kv.set(planted, str(42 ^ 1), 600)
    assert await _rejected(recorded, tampered) is tk.Problem.BAD_SIGNATURE
    # A genuine code's record naming another person (a damaged entry) vouches for nothing.
    genuine = recorded.passes.record_key(issued.token)
    assert genuine is not None
    await recorded.kv.set(genuine, "43", 600)
    checked = _no_signature_checks(monkeypatch)
    assert await _rejected(recorded, issued.token) is tk.Problem.BAD_SIGNATURE
    assert checked == ["signature"]


async def test_a_record_lasts_as_long_as_its_code(recorded: World) -> None:
    issued = await _issue(recorded)
    key = recorded.passes.record_key(issued.token)
    assert recorded.kv is not None and key is not None
    recorded.clock.advance(599)
    assert await recorded.kv.get(key) == b"42"
    recorded.clock.advance(1)
    assert await recorded.kv.get(key) is None
    assert await _rejected(recorded, issued.token) is tk.Problem.EXPIRED


async def test_what_is_no_code_has_no_record(recorded: World) -> None:
    token = (await _issue(recorded)).token
    others = ("", "HC1.", token[:-1], token + "A", token[:-1] + "é", "x" * 114)
    for text in (*others, "http://weixin.qq.com/q/02abc"):
        assert recorded.passes.record_key(text) is None


class _DownKV(MemoryKV):
    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        raise ConnectionError("store down")


async def test_a_store_down_at_issue_leaves_the_code_to_its_signature(
    recorded: World, caplog: pytest.LogCaptureFixture
) -> None:
    recorded.kv = _DownKV(recorded.clock.monotonic)
    recorded.passes.issued = recorded.issued(recorded.passes.keys)
    with caplog.at_level(logging.WARNING, "campus.access.issued"):
        issued = await _issue(recorded)
    assert await recorded.verify(issued.token) == issued.claims
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "not recorded" in warning and "ConnectionError" in warning
    assert issued.token not in caplog.text and "42" not in warning


async def test_a_code_on_record_still_meets_every_other_check(
    recorded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records put as `issue` puts them, for codes signed otherwise: the record only
    stands for the signature; key window, time and key id are still checked."""
    issued_codes = recorded.passes.issued
    assert issued_codes is not None
    first = await _issue(recorded)
    old_key = await recorded.passes.keys.signer()
    await recorded.passes.keys.rotate()
    checked = _no_signature_checks(monkeypatch)

    async def on_record(claims: tk.PassClaims, private: Ed25519PrivateKey) -> str:
        token = tk.sign(claims, private, CAMPUS)
        await issued_codes.record(token, claims, recorded.clock.time())
        return token

    at = int(NOW)
    # The rotated key, for a code expiring after its window.
    late = tk.PassClaims(old_key.key_id, 42, "green", at, at + 3600)
    assert await _rejected(recorded, await on_record(late, old_key.private_key)) is (
        tk.Problem.RETIRED_KEY
    )
    # Dated beyond the allowed clock skew.
    signer = await recorded.passes.keys.signer()
    ahead = tk.PassClaims(signer.key_id, 42, "green", at + 120, at + 600)
    assert await _rejected(recorded, await on_record(ahead, signer.private_key)) is (
        tk.Problem.NOT_YET_VALID
    )
    assert checked == []  # each was on record: refused by the other checks
    assert await recorded.verify(first.token) == first.claims  # the rotated key's own code
    assert checked == []
    # A key this campus does not have names no record.
    stranger = tk.PassClaims(b"\xde\xad\xbe\xef", 42, "green", at, at + 600)
    text = tk.sign(stranger, Ed25519PrivateKey.generate(), CAMPUS)
    assert recorded.passes.record_key(text) is None
    assert await _rejected(recorded, text) is tk.Problem.UNKNOWN_KEY


async def test_records_outlive_a_data_key_rotation(tmp_path: Path) -> None:
    """The record's name comes from the signing key, not from the data key: re-encrypted
    under a new data key alone (as `healthbot keys rotate-data` leaves it, the old key
    gone), the same key names the same records."""
    async for world in _world(f"sqlite+aiosqlite:///{tmp_path}/keys.db", recorded=True):
        issued = await _issue(world)
        both = DataVault.from_setting(f"a-new-data-key,{DATA_KEY}")
        async with world.sessions.begin() as s:
            for row in (await s.execute(select(PassKey))).scalars():
                row.private_cipher = both.rotate(row.private_cipher)
        rotated = KeyRing(
            world.sessions,
            DataVault.from_setting("a-new-data-key"),
            campus=CAMPUS,
            max_validity=600,
            monotonic=world.clock.monotonic,
            wall=world.clock.time,
        )
        await rotated.signer()
        assert world.kv is not None
        other = IssuedCodes(world.kv, Keyspace(CAMPUS), rotated)
        assert other.key(issued.token) == world.passes.record_key(issued.token)


def test_the_record_secret_is_derived_from_the_private_seed() -> None:
    """A known answer, by RFC 5869's HKDF written out: the secret depends on the 32-byte
    seed (which only the key's holder has), not on anything public."""
    seed = bytes(range(32))
    prk = hmac.digest(b"healthbot", seed, "sha256")
    expected = hmac.digest(prk, b"passcode-record\x01", "sha256")
    assert expected.hex() == "9f01a1b14b627413d9a6544121c85389404db2b1ab45af9b689315d2064b9171"
    assert record_secret(Ed25519PrivateKey.from_private_bytes(seed)) == expected


async def test_a_rotated_key_that_cannot_be_read_leaves_its_codes_to_signatures(
    recorded: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    old = await _issue(recorded)
    await recorded.passes.keys.rotate()
    async with recorded.sessions.begin() as s:
        row = (
            await s.execute(select(PassKey).where(PassKey.kid == old.claims.key_id.hex()))
        ).scalar_one()
        row.private_cipher = DataVault.from_setting("another-key").encrypt("x")
    checks: list[str] = []
    real = tk.check_signature

    def counted(*args: Any) -> None:
        checks.append("signature")
        real(*args)

    monkeypatch.setattr("campus.access.passes.check_signature", counted)
    with caplog.at_level(logging.WARNING, "campus.access.keys"):
        for _ in range(2):  # two reloads, one warning
            recorded.clock.advance(61)
            await recorded.passes.keys.verifier(old.claims.key_id)  # the reload
            # As in a process that scans, not the one that issued (which keeps the names
            # of the last codes it made).
            recorded.passes.issued = recorded.issued(recorded.passes.keys)
            assert await recorded.verify(old.token) == old.claims
    assert checks == ["signature", "signature"]
    assert recorded.passes.record_key(old.token) is None
    (warning,) = [r.getMessage() for r in caplog.records]
    assert old.claims.key_id.hex() in warning and "CannotDecrypt" in warning
    fresh = await _issue(recorded)  # the current key is unaffected
    assert await recorded.verify(fresh.token) == fresh.claims
    assert checks == ["signature", "signature"]


async def test_names_are_kept_for_the_last_few_texts_only(recorded: World) -> None:
    issued_codes = recorded.passes.issued
    assert issued_codes is not None
    tokens = []
    for _ in range(70):
        tokens.append((await _issue(recorded)).token)
        recorded.clock.advance(1)
    assert len(set(tokens)) == 70
    names = [issued_codes.key(t) for t in tokens]
    assert len(issued_codes._recent) == 64  # the oldest went first
    assert tokens[0] not in issued_codes._recent and tokens[-1] in issued_codes._recent
    assert [issued_codes.key(f" {t}\n") for t in tokens] == names  # the same, named again
    assert len(set(names)) == 70


async def test_a_code_is_issued_even_when_it_cannot_be_named(
    recorded: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await recorded.passes.keys.signer()
    monkeypatch.setattr(recorded.passes.keys, "record_secret", lambda key_id: None)
    with caplog.at_level(logging.WARNING, "campus.access.issued"):
        issued = await _issue(recorded)
    assert "not recorded" in caplog.text
    assert await recorded.verify(issued.token) == issued.claims  # by its signature
