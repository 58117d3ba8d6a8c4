"""The health section of the rules file: the shipped defaults, and errors that name the rule
and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from campus.health.conditions import AllOf, FieldIs, MissedDays, ReportsWithin
from campus.health.model import Status
from campus.health.rules import RulesError, load, parse
from campus.rules import SHIPPED

GOOD: dict[str, Any] = {
    "version": "2026-03",
    "health": {
        "rules": [
            {
                "name": "fever",
                "status": "yellow",
                "when": {"field": "temperature", "op": ">=", "value": 37.3},
            }
        ],
        "recovery": {"yellow": {"normal_days": 7}, "red": {"normal_days": 14, "clearance": True}},
    },
}


def with_rule(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    doc["health"]["rules"][0].update(changes)
    return doc


def error(doc: Any) -> str:
    with pytest.raises(RulesError) as caught:
        parse(doc)
    return str(caught.value)


def test_the_shipped_rules_are_the_defaults_of_the_design() -> None:
    rules = load()
    assert rules.version == str(yaml.safe_load(SHIPPED.read_text())["version"])
    by_name = {r.name: r for r in rules.rules}
    assert {n: r.status for n, r in by_name.items()} == {
        "fever": Status.YELLOW,
        "fever_with_symptom": Status.RED,
        "contact": Status.RED,
        "travel": Status.YELLOW,
        "missed_reports": Status.YELLOW,
    }
    fever = by_name["fever"].when
    assert isinstance(fever, AllOf) and FieldIs("temperature", ">=", 373) in fever.parts
    travel = by_name["travel"].when
    assert isinstance(travel, ReportsWithin) and travel.days == 14
    assert by_name["missed_reports"].when == MissedDays(">=", 2)
    assert rules.recovery[Status.YELLOW].normal_days == 7
    assert rules.recovery[Status.RED].normal_days == 14 and rules.recovery[Status.RED].clearance
    assert rules.escalate_after.total_seconds() == 2 * 3600
    assert rules.lookback_days == 14


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (with_rule(when={"field": "temperature", "op": "=>", "value": 37.3}), "(fever): when.op"),
        (with_rule(when={"field": "temprature", "op": ">=", "value": 1}), "unknown field"),
        (with_rule(when={"field": "temperature", "op": ">=", "value": "hot"}), "when.value"),
        (with_rule(when={"field": "symptoms", "op": "any_of", "value": ["sneeze"]}), "sneeze"),
        (with_rule(when={"field": "contact", "op": ">=", "value": True}), "does not apply"),
        (with_rule(when={"all": []}), "when.all: expected a non-empty list"),
        (
            with_rule(when={"all": [{"field": "travel", "op": "==", "value": "yes"}]}),
            "(fever): when.all[0].value: expected true or false",
        ),
        (with_rule(when={"history": "reports", "within_days": 14}), "when.where: missing"),
        (with_rule(when={"history": "reports", "within_days": 0, "where": {}}), "within_days"),
        (with_rule(when={"history": "weather"}), "unknown history 'weather'"),
        (with_rule(when={"field": "travel", "op": "==", "value": True, "x": 1}), "when.x"),
        (with_rule(status="purple"), "(fever): status: expected yellow or red"),
        (with_rule(colour="red"), "(fever): colour: unknown key"),
        (with_rule(reason="ate_durian"), "(fever): text: reason 'ate_durian' is not built in"),
        (
            with_rule(reason="durian", text={"zh_CN": "{date} 吃榴莲", "en": "durian {when}"}),
            "(fever): text.en: unknown placeholder {when}",
        ),
        (with_rule(name="Fever!"), "name: expected lower_case"),
    ],
)
def test_a_bad_rule_is_named_with_its_field(doc: Any, expected: str) -> None:
    message = error(doc)
    assert "health.rules[0]" in message
    assert expected in message


def test_other_mistakes_name_their_place() -> None:
    doc = copy.deepcopy(GOOD)
    del doc["version"]
    assert "version: missing" in error(doc)
    doc = copy.deepcopy(GOOD)
    doc["health"]["rules"].append(copy.deepcopy(doc["health"]["rules"][0]))
    assert "health.rules[1] (fever): name: 'fever' is used twice" in error(doc)
    doc = copy.deepcopy(GOOD)
    doc["health"]["recovery"]["red"]["normal_days"] = 0
    assert "health.recovery.red.normal_days" in error(doc)
    doc = copy.deepcopy(GOOD)
    doc["health"]["warnings"] = {"escalate_after_minutes": "2h"}
    assert "health.warnings.escalate_after_minutes" in error(doc)
    assert "health: missing" in error({"version": 1})


def test_a_rule_may_bring_its_own_words() -> None:
    doc = with_rule(reason="durian", text={"zh_CN": "{date} 吃了榴莲", "en": "durian on {date}"})
    rules = parse(doc)
    assert rules.rules[0].texts["en"] == "durian on {date}"


def test_a_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    doc = with_rule(when={"field": "temperature", "op": "=>", "value": 37.3})
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RulesError, match=r"rules\.yaml.*health\.rules\[0\] \(fever\): when\.op"):
        load(path)


def test_the_bot_refuses_to_start_with_a_bad_rule(tmp_path: Path) -> None:
    from bot.keyspace import Keyspace
    from bot.kv import MemoryKV
    from bot.services import build_services
    from bot.settings import Settings
    from storage.engine import create_engine, session_factory

    path = tmp_path / "rules.yaml"
    doc = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    doc["health"]["rules"][0]["when"] = {"field": "temperature", "op": "between"}
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    settings = Settings(_env_file=None, rules_file=str(path))  # type: ignore[call-arg]
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db")
    with pytest.raises(RulesError, match=r"health\.rules\[0\] \(fever\): when\.op"):
        build_services(settings, session_factory(engine), MemoryKV(), Keyspace("wx"))
