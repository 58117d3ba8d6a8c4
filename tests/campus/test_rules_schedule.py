"""The rules file's `schedule:` and `quiet_hours:` sections: loaded, validated, errors named."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from campus.rules import SHIPPED, RulesError, load_rules, parse_rules
from scheduler.jobs import JOBS


def test_the_shipped_file_loads_and_schedules_known_jobs() -> None:
    rules = load_rules()
    assert rules.source == str(SHIPPED)
    assert (rules.quiet_hours.start, rules.quiet_hours.end) == (time(22, 30), time(7, 0))
    assert rules.scheduled("outbox_housekeeping") is not None
    assert {entry.job for entry in rules.schedule} <= set(JOBS)


def test_unknown_sections_are_kept_for_their_owners(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        'version: "x"\nhealth: {rules: []}\naccess: {open: {}}\n'
        'schedule:\n  outbox_housekeeping: "*/10 * * * *"\n',
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert set(rules.sections) == {"version", "health", "access", "schedule"}
    [entry] = rules.schedule
    assert (entry.job, entry.cron, entry.enabled) == ("outbox_housekeeping", "*/10 * * * *", True)
    assert rules.quiet_hours.enabled  # the default window when the section is absent


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schedule": {"reminder": {"cron": "* * *"}}}, "schedule.reminder.cron '\\* \\* \\*'"),
        ({"schedule": {"reminder": {"cron": "61 * * * *"}}}, "schedule.reminder.cron '61"),
        ({"schedule": {"reminder": {}}}, "schedule.reminder.cron is missing"),
        ({"schedule": {"reminder": {"cron": "* * * * *", "at": 1}}}, "schedule.reminder has unkn"),
        ({"schedule": {"reminder": {"cron": "* * * * *", "enabled": "no"}}}, "reminder.enabled"),
        ({"schedule": {"Bad-Name": "* * * * *"}}, "schedule.Bad-Name: a job name"),
        ({"schedule": ["x"]}, "schedule must be a mapping"),
        ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start '25:00'"),
        ({"quiet_hours": {"start": 1350, "end": "07:00"}}, "quiet_hours.start 1350: quote"),
        ({"quiet_hours": {"from": "22:00"}}, "quiet_hours has unknown keys \\['from'\\]"),
        ({"quiet_hours": {"enabled": "yes"}}, "quiet_hours.enabled"),
        (["not", "a", "mapping"], "top level must be a mapping"),
    ],
)
def test_errors_name_the_bad_entry(doc: object, message: str) -> None:
    with pytest.raises(RulesError, match=message):
        parse_rules(doc, source="r.yaml")


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"rules file .*missing\.yaml"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule: [unclosed\n", encoding="utf-8")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)


def test_quiet_hours_can_be_switched_off() -> None:
    rules = parse_rules({"quiet_hours": {"enabled": False}})
    assert not rules.quiet_hours.enabled
    short = parse_rules({"schedule": {"outbox_housekeeping": "0 3 * * 1"}})
    assert short.schedule[0].cron == "0 3 * * 1"
