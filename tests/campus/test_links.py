"""Signed links: what they carry, and every way a link is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campus.links import BadLink, LinkSigner

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_a_link_round_trips_its_claims() -> None:
    signer = LinkSigner("key-one")
    token = signer.sign("dashboard", {"person": 7, "units": [1, 2]}, NOW, timedelta(minutes=15))
    link = signer.verify(token, "dashboard", NOW + timedelta(minutes=14))
    assert link.claims == {"person": 7, "units": [1, 2]}
    assert link.expires_at == NOW + timedelta(minutes=15)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "forged"),
        (lambda t: "x" + t, "forged"),
        (lambda t: t.replace(".", ""), "malformed"),
        (lambda t: "", "malformed"),
        (lambda t: "!!!.???", "malformed"),
        (lambda t: t + "a" * 3000, "malformed"),
    ],
)
def test_tampered_links_are_refused(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    signer = LinkSigner("key-one")
    token = signer.sign("dashboard", {"person": 7}, NOW, timedelta(minutes=15))
    with pytest.raises(BadLink) as caught:
        signer.verify(mutate(token), "dashboard", NOW)
    assert caught.value.reason == reason


def test_expired_other_kind_and_other_key_are_refused() -> None:
    signer = LinkSigner("key-one")
    token = signer.sign("dashboard", {"person": 7}, NOW, timedelta(minutes=15))
    with pytest.raises(BadLink, match="expired"):
        signer.verify(token, "dashboard", NOW + timedelta(minutes=15))
    with pytest.raises(BadLink, match="wrong_kind"):
        signer.verify(token, "trace", NOW)
    with pytest.raises(BadLink, match="forged"):
        LinkSigner("key-two").verify(token, "dashboard", NOW)


def test_links_survive_a_key_rotation() -> None:
    old = LinkSigner("key-one").sign("trace", {"incident": 3}, NOW, timedelta(minutes=15))
    rotated = LinkSigner("key-two,key-one")
    assert rotated.verify(old, "trace", NOW).claims == {"incident": 3}
    fresh = rotated.sign("trace", {"incident": 3}, NOW, timedelta(minutes=15))
    with pytest.raises(BadLink, match="forged"):
        LinkSigner("key-one").verify(fresh, "trace", NOW)
