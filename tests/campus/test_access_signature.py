"""Pass codes signed with `cryptography` (OpenSSL) and checked with ed25519-zebra at the gate,
which must judge them as RFC 8032 does (libsodium's strict check is the reference here)."""

from __future__ import annotations

import base64
import hashlib

import ed25519_zebra
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_ed25519_base_noclamp, crypto_sign_open
from nacl.exceptions import BadSignatureError

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


def test_a_code_signed_with_cryptography_verifies_at_the_gate() -> None:
    key = Ed25519PrivateKey.generate()
    token = tk.parse(_token(key))
    verifier = tk.Verifier(key.public_key())
    tk.check_signature(token, verifier, CAMPUS)  # the gate's path
    tk.check_signature(token, key.public_key(), CAMPUS)  # a bare public key, converted
    message = tk.signed_message(CAMPUS, token.payload)
    key.public_key().verify(token.signature, message)  # and OpenSSL agrees
    crypto_sign_open(token.signature + message, verifier.raw)  # and libsodium


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


# -- The gate's verifier against libsodium's strict rules -----------------------------------
# Signatures made by hand (RFC 8032, 5.1.6) with a key's secret scalar, to reach the cases
# where ZIP 215 (ed25519-zebra) and libsodium (or OpenSSL) differ. The curve arithmetic is
# RFC 8032's (5.1.3 decoding, 5.1.4 addition), affine and slow: for a few points only.

L = 2**252 + 27742317777372353535851937790883648493  # the order of the base point B
P = 2**255 - 19
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
SEED = bytes(range(32))
MESSAGE = tk.signed_message(CAMPUS, bytes(18))
# The y coordinates of the 8 points of small order: the identity (1), the point of order 2
# (p − 1), the two of order 4 (0) and the four of order 8 (libsodium's list).
Y_ORDER_8 = 0x05FC536D880238B13933C6D305ACDFD5F098EFF289F4C345B027B2C28F95E826
SMALL_ORDER_Y = (0, 1, P - 1, Y_ORDER_8, P - Y_ORDER_8)

Point = tuple[int, int]


def _point(y: int, negative_x: bool = False) -> bytes:
    """An encoding: y, and x's sign in the top bit (whether or not it is a point)."""
    return (y | (negative_x << 255)).to_bytes(32, "little")


def _decode(encoded: bytes) -> Point:
    y = int.from_bytes(encoded, "little") & ((1 << 255) - 1)
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P != u:
        x = x * SQRT_M1 % P
    assert v * x * x % P == u, "not a point"
    return (P - x if x and (x & 1) != encoded[31] >> 7 else x), y


def _encode(point: Point) -> bytes:
    x, y = point
    return _point(y, bool(x & 1))


def _add(one: Point, other: Point) -> Point:
    (x1, y1), (x2, y2) = one, other
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P,
    )


def _torsion() -> list[bytes]:
    """The 7 points of small order other than the identity, encoded."""
    points = {_decode(_point(y, sign)) for y in SMALL_ORDER_Y for sign in (False, True)}
    points.discard((0, 1))
    assert len(points) == 7
    return sorted(_encode(point) for point in points)


TORSION = _torsion()


def _secret_scalar(seed: bytes) -> int:
    digest = hashlib.sha512(seed).digest()
    a = int.from_bytes(digest[:32], "little")
    return (a & ((1 << 254) - 8)) | (1 << 254)


def _public(seed: bytes) -> bytes:
    return crypto_scalarmult_ed25519_base_noclamp((_secret_scalar(seed) % L).to_bytes(32, "little"))


def _sign_with_r(seed: bytes, message: bytes, R: bytes, r: int, public: bytes = b"") -> bytes:
    """s = r + k·a for the given R (which should be r·B, and is not in the cases below) and
    the given encoding of the public key (by default a·B's)."""
    public = public or _public(seed)
    k = int.from_bytes(hashlib.sha512(R + public + message).digest(), "little") % L
    return R + ((r + k * _secret_scalar(seed)) % L).to_bytes(32, "little")


def _nonce_point(r: int) -> bytes:
    return crypto_scalarmult_ed25519_base_noclamp(r.to_bytes(32, "little"))


def _verdicts(signature: bytes, public: bytes = b"") -> tuple[bool, bool, bool, bool]:
    """(the gate, libsodium, OpenSSL, ed25519-zebra alone) on `signature` over MESSAGE."""
    public = public or _public(SEED)
    gate = tk.Verifier(Ed25519PublicKey.from_public_bytes(public)).verify(signature, MESSAGE)
    try:
        crypto_sign_open(signature + MESSAGE, public)
        sodium = True
    except BadSignatureError:
        sodium = False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, MESSAGE)
        openssl = True
    except InvalidSignature:
        openssl = False
    return gate, sodium, openssl, bool(ed25519_zebra.ed_verify(signature, MESSAGE, public))


def test_the_hand_made_signature_and_arithmetic_are_rfc_8032s() -> None:
    """The helpers above sign as RFC 8032 does when R = r·B with r from the key's prefix,
    and decode, add and encode points as libsodium does."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    assert tk.public_bytes(key.public_key()) == _public(SEED)
    prefix = hashlib.sha512(SEED).digest()[32:]
    r = int.from_bytes(hashlib.sha512(prefix + MESSAGE).digest(), "little") % L
    signature = _sign_with_r(SEED, MESSAGE, _nonce_point(r), r)
    assert signature == key.sign(MESSAGE)
    assert _verdicts(signature) == (True, True, True, True)
    assert _encode(_add(_decode(_nonce_point(3)), _decode(_nonce_point(4)))) == _nonce_point(7)
    assert _encode(_decode(_public(SEED))) == _public(SEED)


@pytest.mark.parametrize("r", [1, 2, 12345, L - 1, 2**200 + 7])
def test_signatures_by_rfc_8032_are_accepted_by_all(r: int) -> None:
    assert _verdicts(_sign_with_r(SEED, MESSAGE, _nonce_point(r), r)) == (True, True, True, True)


@pytest.mark.parametrize("torsion", TORSION, ids=lambda t: t.hex()[:8])
def test_an_r_with_a_small_order_part_made_by_the_key_holder_is_where_the_rules_differ(
    torsion: bytes,
) -> None:
    """R = r·B + T with s = r + k·a: the cofactored equation holds, the strict one does not.
    Only the key's holder can make it; the campus never does (it signs with R = r·B)."""
    r = 987654321
    R = _encode(_add(_decode(_nonce_point(r)), _decode(torsion)))
    gate, sodium, openssl, zebra = _verdicts(_sign_with_r(SEED, MESSAGE, R, r))
    assert (sodium, openssl) == (False, False)
    assert gate and zebra  # what docs/passcode.md and token.Verifier say of it


@pytest.mark.parametrize("torsion", TORSION, ids=lambda t: t.hex()[:8])
def test_a_small_order_part_added_to_an_issued_signature_is_refused(torsion: bytes) -> None:
    """Without the secret, adding a point of small order to R changes k: nobody accepts it."""
    signature = Ed25519PrivateKey.from_private_bytes(SEED).sign(MESSAGE)
    R = _encode(_add(_decode(signature[:32]), _decode(torsion)))
    assert _verdicts(R + signature[32:]) == (False, False, False, False)


def test_a_key_with_a_small_order_part_is_the_other_difference() -> None:
    """A = a·B + T (T of order 8), signed as RFC 8032 says: the cofactor hides T·k from
    zebra, not from libsodium. The campus makes its own keys (A = a·B) and imports none."""
    public = _encode(_add(_decode(_public(SEED)), _decode(_point(Y_ORDER_8))))
    r = 424242
    signature = _sign_with_r(SEED, MESSAGE, _nonce_point(r), r, public)
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + MESSAGE).digest(), "little")
    assert k % L % 8 != 0  # else T·k vanishes and the strict equation holds too
    gate, sodium, _, zebra = _verdicts(signature, public)
    assert not sodium
    assert gate and zebra


@pytest.mark.parametrize("y", SMALL_ORDER_Y)
@pytest.mark.parametrize("negative_x", [False, True])
def test_an_r_of_small_order_is_refused_as_by_libsodium(y: int, negative_x: bool) -> None:
    """R a point of small order, s = k·a: ZIP 215 accepts what only the key's holder could
    make, libsodium refuses it, and so does the gate (its own check before zebra's). OpenSSL
    accepts R = the identity, for which even the strict equation holds."""
    R = _point(y, negative_x)
    gate, sodium, _, zebra = _verdicts(_sign_with_r(SEED, MESSAGE, R, 0))
    assert (gate, sodium) == (False, False)
    assert zebra  # so the gate's own check is what refuses it


@pytest.mark.parametrize("negative_x", [False, True])
def test_a_non_canonical_r_is_refused_as_by_libsodium(negative_x: bool) -> None:
    """A y from p to 2²⁵⁵ − 1: the second encoding of y − p, out of range. With y − p = 1
    (the identity) and s = k·a, ZIP 215 accepts it; libsodium and the gate do not."""
    for y in range(P, 2**255):
        R = _point(y, negative_x)
        gate, sodium, _, zebra = _verdicts(_sign_with_r(SEED, MESSAGE, R, 0))
        assert (gate, sodium) == (False, False), y
        if y == P + 1:
            assert zebra


def test_an_s_beyond_the_group_order_is_refused_by_all() -> None:
    """s + L verifies the same equation: both rule sets refuse it, so codes are not malleable."""
    signature = Ed25519PrivateKey.from_private_bytes(SEED).sign(MESSAGE)
    s = int.from_bytes(signature[32:], "little")
    assert s + L < 2**256
    mauled = signature[:32] + (s + L).to_bytes(32, "little")
    assert _verdicts(mauled) == (False, False, False, False)


@pytest.mark.parametrize("y", SMALL_ORDER_Y)
@pytest.mark.parametrize("negative_x", [False, True])
def test_a_public_key_of_small_order_verifies_nothing(y: int, negative_x: bool) -> None:
    """With A of small order, R = s·B satisfies ZIP 215 for any message: anybody could sign.
    Such a key verifies nothing at the gate, as with libsodium."""
    A = _point(y, negative_x)
    signature = _nonce_point(5) + (5).to_bytes(32, "little")
    gate, sodium, _, zebra = _verdicts(signature, A)
    assert (gate, sodium) == (False, False)
    assert zebra


@pytest.mark.parametrize("y", [P, P + 1])
@pytest.mark.parametrize("negative_x", [False, True])
def test_a_public_key_not_canonically_encoded_verifies_nothing(y: int, negative_x: bool) -> None:
    """A = the second encoding of a point of small order (0 or the identity): R = s·B
    satisfies ZIP 215 for any message. Refused by the gate, as by libsodium."""
    A = _point(y, negative_x)
    signature = _nonce_point(5) + (5).to_bytes(32, "little")
    gate, sodium, _, zebra = _verdicts(signature, A)
    assert (gate, sodium) == (False, False)
    assert zebra


def test_each_code_has_one_string() -> None:
    """The last character's 4 unused bits must be 0: of its 16 spellings, one parses."""
    token = _token(Ed25519PrivateKey.from_private_bytes(SEED))
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    base = alphabet.index(token[-1]) & ~0xF
    spellings = [token[:-1] + alphabet[base | low] for low in range(16)]
    assert spellings[0] == token
    tk.parse(token)
    for other in spellings[1:]:
        assert base64.urlsafe_b64decode(other[4:] + "==") == base64.urlsafe_b64decode(
            token[4:] + "=="
        )  # the same bytes to a lenient decoder
        with pytest.raises(tk.TokenRejected) as caught:
            tk.parse(other)
        assert caught.value.problem is tk.Problem.MALFORMED
