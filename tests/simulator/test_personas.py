"""The persona contract: its shape, and the openids derived from it."""

from __future__ import annotations

import base64
import hashlib

import pytest

from simulator.personas import PersonaError, parse_personas, persona_openid, stranger_openid


def test_openid_is_o_plus_urlsafe_sha1_trimmed_to_28() -> None:
    digest = hashlib.sha1(b"wx123:S001").digest()
    expected = ("o" + base64.urlsafe_b64encode(digest).decode())[:28]
    assert persona_openid("wx123", "S001") == expected
    assert persona_openid("wx123", "S001") != persona_openid("wx124", "S001")


def test_strangers_get_fresh_openids() -> None:
    first, second = stranger_openid(), stranger_openid()
    assert first != second
    assert len(first) == 28 and first.startswith("o")


def test_optional_fields_default() -> None:
    (persona,) = parse_personas({"personas": [{"person_no": "V9", "name": "访客"}]}, "wx")
    assert (persona.key, persona.roles, persona.unit, persona.bind_hint) == ("V9", (), "", "")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "expected"),
        ({"personas": {}}, "expected"),
        ({"personas": ["x"]}, "not an object"),
        ({"personas": [{"name": "x"}]}, "person_no"),
        ({"personas": [{"person_no": "1", "name": ""}]}, "name"),
        ({"personas": [{"person_no": "1", "name": "x", "roles": "guard"}]}, "roles"),
    ],
)
def test_bad_payloads_name_the_problem(payload: object, reason: str) -> None:
    with pytest.raises(PersonaError, match=reason):
        parse_personas(payload, "wx")
