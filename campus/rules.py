"""The rules file (`campus/rules.yaml`, or HEALTHBOT_RULES_FILE): loaded and validated once.

This module reads the sections the scheduler and notifications need (`schedule`,
`quiet_hours`); other top-level sections are kept in `Rules.sections` for the features that
own them, so a rules file may carry sections this code does not know. Every validation error
names the bad entry: `schedule.reminder.cron: Wrong number of fields; got 3, expected 5`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from apscheduler.triggers.cron import CronTrigger

from campus.quiet_hours import DEFAULT_END, DEFAULT_START, QuietHours

SHIPPED = Path(__file__).with_name("rules.yaml")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_JOB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_SCHEDULE_KEYS = frozenset({"cron", "enabled"})
_QUIET_KEYS = frozenset({"start", "end", "enabled"})


class RulesError(ValueError):
    """The rules file is unreadable or an entry in it is invalid; the message names it."""


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """A cron job: `job` runs when the five-field crontab expression `cron` matches."""

    job: str
    cron: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Rules:
    source: str
    quiet_hours: QuietHours = field(default_factory=QuietHours)
    schedule: tuple[ScheduleEntry, ...] = ()
    # Every top-level section as read (for the features that own the other sections).
    sections: Mapping[str, Any] = field(default_factory=dict)

    def scheduled(self, job: str) -> ScheduleEntry | None:
        return next((e for e in self.schedule if e.job == job), None)


def load_rules(path: str | Path | None = None) -> Rules:
    """Read and validate a rules file (default: the shipped one); raises RulesError."""
    return _load(str(Path(path) if path else SHIPPED))


@cache
def _load(path: str) -> Rules:
    try:
        with open(path, encoding="utf-8") as fp:
            doc = yaml.safe_load(fp)
    except OSError as exc:
        raise RulesError(f"rules file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RulesError(f"rules file {path} is not valid YAML: {exc}") from None
    return parse_rules(doc, source=path)


def parse_rules(doc: object, source: str = "<rules>") -> Rules:
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RulesError(f"{source}: the top level must be a mapping of sections")
    for key in doc:
        if not isinstance(key, str):
            raise RulesError(f"{source}: section name {key!r} is not a string")
    return Rules(
        source=source,
        quiet_hours=_quiet_hours(doc.get("quiet_hours"), source),
        schedule=_schedule(doc.get("schedule"), source),
        sections=dict(doc),
    )


def _quiet_hours(raw: object, source: str) -> QuietHours:
    if raw is None:
        return QuietHours()
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: quiet_hours must be a mapping with start and end")
    unknown = set(raw) - _QUIET_KEYS
    if unknown:
        raise RulesError(f"{source}: quiet_hours has unknown keys {sorted(map(str, unknown))}")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesError(f"{source}: quiet_hours.enabled {enabled!r} is not true or false")
    return QuietHours(
        start=_hhmm(raw.get("start", DEFAULT_START), "quiet_hours.start", source),
        end=_hhmm(raw.get("end", DEFAULT_END), "quiet_hours.end", source),
        enabled=enabled,
    )


def _hhmm(value: object, where: str, source: str) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 22:30 as the sexagesimal number 1350.
        raise RulesError(f'{source}: {where} {value!r}: quote the time, e.g. "22:30"')
    match = _HHMM.match(value) if isinstance(value, str) else None
    if match is None:
        raise RulesError(f"{source}: {where} {value!r} is not a time HH:MM (00:00–23:59)")
    return time(int(match[1]), int(match[2]))


def _schedule(raw: object, source: str) -> tuple[ScheduleEntry, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise RulesError(f"{source}: schedule must be a mapping of job name to entry")
    entries = []
    for name, item in raw.items():
        where = f"schedule.{name}"
        if not isinstance(name, str) or not _JOB_NAME.match(name):
            raise RulesError(f"{source}: {where}: a job name is lower_snake_case")
        if isinstance(item, str):
            item = {"cron": item}  # the short form `name: "*/5 * * * *"`
        if not isinstance(item, dict):
            raise RulesError(f"{source}: {where} must be a mapping with cron")
        unknown = set(item) - _SCHEDULE_KEYS
        if unknown:
            raise RulesError(f"{source}: {where} has unknown keys {sorted(map(str, unknown))}")
        cron = item.get("cron")
        if not isinstance(cron, str) or not cron.strip():
            raise RulesError(f"{source}: {where}.cron is missing (five crontab fields)")
        try:
            CronTrigger.from_crontab(cron)
        except ValueError as exc:
            raise RulesError(f"{source}: {where}.cron {cron!r}: {exc}") from None
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise RulesError(f"{source}: {where}.enabled {enabled!r} is not true or false")
        entries.append(ScheduleEntry(job=name, cron=cron.strip(), enabled=enabled))
    return tuple(entries)
