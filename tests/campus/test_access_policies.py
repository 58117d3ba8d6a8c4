"""Access policies: the rules file's `policies:` section and every rule of a decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from campus.access.policies import (
    DEFAULTS,
    REQUIRED,
    Policy,
    PolicyError,
    Reason,
    Subject,
    parse_policies,
)
from campus.rules import SHIPPED, load_rules

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Wednesday, 10:00 in Shanghai.
WEDNESDAY_10 = datetime(2026, 11, 25, 10, 0, tzinfo=SHANGHAI)


def _subject(**changes: Any) -> Subject:
    values: dict[str, Any] = {
        "person_id": 1,
        "status": "green",
        "category": "student",
        "state": "active",
        "valid_until": None,
        "home_place_id": None,
        "returned_at": None,
        **changes,
    }
    return Subject(**values)


def _policies(**extra: Any) -> dict[str, Any]:
    return {**{k: dict(v) for k, v in DEFAULTS.items()}, **extra}


def _decide(
    policy: Policy, subject: Subject, at: datetime = WEDNESDAY_10, place: int = 10
) -> Reason | None:
    # Place tree: 10 ⊃ 11 ⊃ 12; 20 elsewhere.
    parents = {11: 10, 12: 11, 10: None, 20: None}

    def within(inner: int, outer: int) -> bool:
        current: int | None = inner
        while current is not None:
            if current == outer:
                return True
            current = parents.get(current)
        return False

    return policy.decide(subject, place, at, within)


def test_the_shipped_file_defines_the_five() -> None:
    rules = load_rules(SHIPPED)
    policies = parse_policies(rules.sections.get("policies"), rules.source)
    for name in REQUIRED:
        assert name in policies
    assert policies.get("open") is not None
    assert policies.get("staff_only").categories == {"faculty", "staff"}  # type: ignore[union-attr]


def test_a_rules_file_without_policies_gets_the_defaults() -> None:
    policies = parse_policies(None)
    assert set(policies.by_name) == set(REQUIRED)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"lib": {"capcity": 3}}, "policies.lib: unknown field 'capcity'"),
        ({"lib": {"statuses": ["purple"]}}, "policies.lib.statuses: unknown status 'purple'"),
        ({"lib": {"statuses": []}}, "policies.lib.statuses: admits no status"),
        ({"lib": {"categories": ["professor"]}}, "policies.lib.categories: unknown category"),
        ({"lib": {"capacity": 0}}, "policies.lib.capacity: 0 is not a whole number"),
        ({"lib": {"capacity": True}}, "policies.lib.capacity"),
        ({"lib": {"residents_only": "yes"}}, "policies.lib.residents_only: 'yes' is not true"),
        ({"lib": {"windows": [{"from": "7:00", "to": "22:00"}]}}, "policies.lib.windows[0].from"),
        ({"lib": {"windows": [{"from": 420, "to": "22:00"}]}}, "quote the time"),
        ({"lib": {"windows": [{"from": "22:00", "to": "07:00"}]}}, "policies.lib.windows[0]: to"),
        (
            {"lib": {"windows": [{"days": ["mon", "fry"], "from": "07:00", "to": "08:00"}]}},
            "windows[0].days: unknown day 'fry'",
        ),
        ({"lib": {"windows": [{"at": "x"}]}}, "windows[0]: unknown field 'at'"),
        ({"lib": {"windows": []}}, "policies.lib.windows: must be a non-empty list"),
        ({"Lib": {}}, "policies.Lib: a policy name is lower_snake_case"),
        ({"lib": ["green"]}, "policies.lib: must be a mapping"),
    ],
)
def test_errors_name_the_policy_and_the_field(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policies(_policies(**extra), "rules.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("rules.yaml: ")


def test_the_five_are_required() -> None:
    raw = _policies()
    del raw["returned_only"]
    with pytest.raises(PolicyError, match="missing returned_only"):
        parse_policies(raw)


def test_a_bad_policy_stops_start_up(tmp_path: Any) -> None:
    from bot.keyspace import Keyspace
    from bot.kv import MemoryKV
    from bot.services import build_services
    from bot.settings import Settings
    from storage.engine import create_engine, session_factory

    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"policies": _policies(lib={"statuses": ["blue"]})}))
    settings = Settings(_env_file=None, rules_file=str(path))  # type: ignore[call-arg]
    sessions = session_factory(create_engine("sqlite+aiosqlite:///:memory:"))
    with pytest.raises(PolicyError, match=r"policies\.lib\.statuses"):
        build_services(settings, sessions, MemoryKV(), Keyspace("wx"))


def test_statuses() -> None:
    green_only = parse_policies(_policies()).get("green_only")
    open_ = parse_policies(_policies()).get("open")
    assert green_only is not None and open_ is not None
    assert _decide(green_only, _subject()) is None
    assert _decide(green_only, _subject(status="yellow")) is Reason.STATUS
    assert _decide(green_only, _subject(status="red")) is Reason.STATUS
    assert _decide(open_, _subject(status="red")) is None
    yellow_ok = parse_policies(_policies(y={"statuses": ["green", "yellow"]})).get("y")
    assert yellow_ok is not None and _decide(yellow_ok, _subject(status="yellow")) is None


def test_categories() -> None:
    staff_only = parse_policies(_policies()).get("staff_only")
    assert staff_only is not None
    assert _decide(staff_only, _subject(category="student")) is Reason.CATEGORY
    assert _decide(staff_only, _subject(category="faculty")) is None
    assert _decide(staff_only, _subject(category="staff", status="yellow")) is Reason.STATUS


def test_residents_only() -> None:
    residents = parse_policies(_policies()).get("residents_only")
    assert residents is not None
    assert _decide(residents, _subject(home_place_id=None)) is Reason.NOT_RESIDENT
    assert _decide(residents, _subject(home_place_id=20)) is Reason.NOT_RESIDENT
    assert _decide(residents, _subject(home_place_id=10)) is None  # the place itself
    assert _decide(residents, _subject(home_place_id=12)) is None  # a room inside it
    assert _decide(residents, _subject(home_place_id=10), place=11) is Reason.NOT_RESIDENT


def test_returned_only() -> None:
    returned = parse_policies(_policies()).get("returned_only")
    assert returned is not None
    assert _decide(returned, _subject()) is Reason.NOT_RETURNED
    back = WEDNESDAY_10.astimezone(UTC) - timedelta(days=1)
    assert _decide(returned, _subject(returned_at=back)) is None
    later = WEDNESDAY_10.astimezone(UTC) + timedelta(days=1)
    assert _decide(returned, _subject(returned_at=later)) is Reason.NOT_RETURNED


def test_time_windows_in_the_campus_time_zone() -> None:
    raw = _policies(
        lib={
            "windows": [
                {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "07:30", "to": "22:30"},
                {"days": ["sat", "sun"], "from": "09:00", "to": "24:00"},
            ]
        }
    )
    lib = parse_policies(raw).get("lib")
    assert lib is not None
    assert _decide(lib, _subject(), WEDNESDAY_10) is None
    assert _decide(lib, _subject(), WEDNESDAY_10.replace(hour=7, minute=29)) is Reason.CLOSED
    assert _decide(lib, _subject(), WEDNESDAY_10.replace(hour=7, minute=30)) is None
    assert _decide(lib, _subject(), WEDNESDAY_10.replace(hour=22, minute=30)) is Reason.CLOSED
    saturday = WEDNESDAY_10 + timedelta(days=3)
    assert _decide(lib, _subject(), saturday.replace(hour=8)) is Reason.CLOSED
    assert _decide(lib, _subject(), saturday.replace(hour=23, minute=59)) is None
    assert lib.hours() == "mon,tue,wed,thu,fri 07:30–22:30; sat,sun 09:00–24:00"


def test_inactive_persons_are_refused_first() -> None:
    open_ = parse_policies(_policies()).get("open")
    assert open_ is not None
    for subject in (
        _subject(state="left"),
        _subject(state="pending"),
        _subject(valid_until=date(2026, 11, 24)),
    ):
        assert _decide(open_, subject) is Reason.INACTIVE
    assert _decide(open_, _subject(valid_until=date(2026, 11, 25))) is None


def test_capacity_is_parsed() -> None:
    lib = parse_policies(_policies(lib={"capacity": 3})).get("lib")
    assert lib is not None and lib.capacity == 3
