"""The rules file's `meals:` section: the shipped values, and errors that name the entry."""

from __future__ import annotations

from datetime import time

import pytest

from campus.meals.rules import Deadline, parse_meal_rules
from campus.rules import RulesError, load_rules


def test_the_shipped_rules() -> None:
    rules = load_rules()
    meals = parse_meal_rules(rules.sections.get("meals"), rules.source)
    assert meals.deadlines == {
        "breakfast": Deadline(time(20, 0), 1),
        "lunch": Deadline(time(9, 30)),
        "dinner": Deadline(time(15, 0)),
    }
    assert meals.per_person_limit == 2 and meals.delivery_days_after_return == 14
    assert meals.delivery_statuses == {"yellow", "red"} and meals.always == {"faculty", "staff"}
    assert rules.scheduled("meals_deadline_push") is not None


def test_defaults_without_a_section() -> None:
    assert parse_meal_rules(None).deadlines["lunch"] == Deadline(time(9, 30))


@pytest.mark.parametrize(
    ("section", "error"),
    [
        ([], "meals must be a mapping"),
        ({"limit": 2}, "meals has unknown keys ['limit']"),
        ({"deadlines": {"supper": "18:00"}}, "meals.deadlines.supper: a slot is one of"),
        ({"deadlines": {"lunch": "9:30"}}, "meals.deadlines.lunch '9:30' is not a time HH:MM"),
        ({"deadlines": {"lunch": 570}}, "meals.deadlines.lunch 570: quote the time"),
        (
            {"deadlines": {"breakfast": {"at": "20:00", "days_before": -1}}},
            "meals.deadlines.breakfast.days_before -1 is not a whole number 0–7",
        ),
        ({"deadlines": {"breakfast": {"time": "20:00"}}}, "has unknown keys ['time']"),
        ({"per_person_limit": 0}, "meals per_person_limit 0 is not a whole number 1–100"),
        ({"per_person_limit": "2"}, "meals per_person_limit '2' is not a whole number"),
        ({"delivery": {"statuses": ["orange"]}}, "meals.delivery.statuses: unknown ['orange']"),
        ({"delivery": {"days": 14}}, "meals.delivery has unknown keys ['days']"),
        ({"always": "staff"}, "meals.always must be a list of names"),
    ],
)
def test_bad_entries_are_named(section: object, error: str) -> None:
    with pytest.raises(RulesError, match=None) as caught:
        parse_meal_rules(section, "rules.yaml")
    assert str(caught.value).startswith("rules.yaml: ") and error in str(caught.value)
