"""Pass codes signed with `cryptography` (OpenSSL) and checked with libsodium at the gate."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from campus.access import token as tk

CAMPUS = "wx1234567890abcdef"

# RFC 8032, section 7.1, TEST 1 (the empty message).
RFC_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def _token(key: Ed25519PrivateKey, person: int = 7, campus: str = CAMPUS) -> str:
    kid = tk.key_id_for(key.public_key())
    claims = tk.PassClaims(kid, person, "green", 1_800_000_000, 1_800_000_600)
    return tk.sign(claims, key, campus)


def _flip(token: str, bit: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token[4:] + "=="))
    raw[bit // 8] ^= 1 << (bit % 8)
    return "HC1." + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_the_rfc_8032_vector_both_ways() -> None:
    key = Ed25519PrivateKey.from_private_bytes(RFC_SECRET)
    assert tk.public_bytes(key.public_key()) == RFC_PUBLIC
    assert key.sign(b"") == RFC_SIGNATURE
    verifier = tk.Verifier(key.public_key())
    assert verifier.raw == RFC_PUBLIC
    assert verifier.verify(RFC_SIGNATURE, b"")
    assert not verifier.verify(RFC_SIGNATURE, b"\0")
    assert not verifier.verify(RFC_SIGNATURE[:-1], b"")  # short signature: refused, no read


def test_a_code_signed_with_cryptography_verifies_with_libsodium() -> None:
    key = Ed25519PrivateKey.generate()
    token = tk.parse(_token(key))
    verifier = tk.Verifier(key.public_key())
    tk.check_signature(token, verifier, CAMPUS)  # the gate's path
    tk.check_signature(token, key.public_key(), CAMPUS)  # a bare public key, converted
    message = tk.signed_message(CAMPUS, token.payload)
    key.public_key().verify(token.signature, message)  # and OpenSSL agrees


@pytest.mark.parametrize("bit", [0, 9, 8 * 5 + 3, 8 * 17 + 7, 8 * 18, 8 * 50 + 1, 8 * 82 - 1])
def test_one_flipped_bit_does_not_verify(bit: int) -> None:
    """Payload bits (0–143) and signature bits (144–655): none may change unnoticed."""
    key = Ed25519PrivateKey.generate()
    verifier = tk.Verifier(key.public_key())
    try:
        tampered = tk.parse(_flip(_token(key), bit))
    except tk.TokenRejected:
        return  # a flipped version or status byte may already make it malformed
    with pytest.raises(tk.TokenRejected) as caught:
        tk.check_signature(tampered, verifier, CAMPUS)
    assert caught.value.problem is tk.Problem.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=8 * tk.TOKEN_BYTES - 1), st.integers(1, 2**32 - 1))
def test_every_single_bit_flip_is_caught(bit: int, person: int) -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    verifier = tk.Verifier(key.public_key())
    good = _token(key, person)
    tk.check_signature(tk.parse(good), verifier, CAMPUS)
    try:
        tampered = tk.parse(_flip(good, bit))
    except tk.TokenRejected:
        return
    with pytest.raises(tk.TokenRejected):
        tk.check_signature(tampered, verifier, CAMPUS)


def test_another_key_or_campus_does_not_verify() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    token = tk.parse(_token(key))
    for verifier, campus in (
        (tk.Verifier(other.public_key()), CAMPUS),
        (tk.Verifier(key.public_key()), "wxother"),
    ):
        with pytest.raises(tk.TokenRejected) as caught:
            tk.check_signature(token, verifier, campus)
        assert caught.value.problem is tk.Problem.BAD_SIGNATURE
