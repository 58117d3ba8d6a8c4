"""The `health:` section of the rules file: rules, recovery and warnings, checked when loaded.

    version: "2026-11-26"
    health:
      rules:
        - name: fever
          status: yellow
          when: {all: [{field: temperature, op: ">=", value: 37.3}, {field: symptoms, op: empty}]}
      recovery:
        yellow: {normal_days: 7}
        red: {normal_days: 14, clearance: true}
      warnings:
        escalate_after_minutes: 120
        max_levels: 3

Every mistake raises RulesError naming the rule and the field, so a bad file stops start-up
with a message an operator can act on.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from campus import rules as rules_file
from campus.health import conditions
from campus.health.conditions import Condition, ConditionError
from campus.health.model import Status
from campus.rules import load_rules

# Reason codes whose plain-words text is in the message catalogs (campus/health/explain.py).
# A rule with another code brings its own text in both languages.
KNOWN_REASONS = ("fever", "fever_with_symptom", "symptoms", "contact", "travel", "missed_reports")
TEXT_PLACEHOLDERS = frozenset({"date", "temperature", "symptoms", "region", "days"})
TEXT_LOCALES = ("zh_CN", "en")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class RulesError(rules_file.RulesError):
    """The health section cannot be used; the message names the rule and the field."""


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    status: Status
    when: Condition
    reason: str  # a code of KNOWN_REASONS, or any code with `texts`
    texts: Mapping[str, str] = field(default_factory=dict)
    warn: bool = True


@dataclass(frozen=True, slots=True)
class Recovery:
    normal_days: int
    clearance: bool = False


@dataclass(frozen=True, slots=True)
class HealthRules:
    version: str
    rules: tuple[Rule, ...]
    recovery: Mapping[Status, Recovery]
    escalate_after: timedelta = timedelta(hours=2)
    max_levels: int = 3
    # Days of reports an evaluation reads (today included); derived from the rules.
    lookback_days: int = field(init=False, default=1)

    def __post_init__(self) -> None:
        needed = [conditions.lookback(r.when) for r in self.rules]
        needed += [r.normal_days for r in self.recovery.values()]
        object.__setattr__(self, "lookback_days", max(needed, default=1))

    def rule(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def reordered(self, rules: tuple[Rule, ...]) -> HealthRules:
        return HealthRules(self.version, rules, self.recovery, self.escalate_after, self.max_levels)


def load(path: str | Path | None = None) -> HealthRules:
    """The health rules of a rules file (the shipped campus/rules.yaml when `path` is None).

    The file is read once by campus.rules (cached); this checks its `version` and `health`.
    """
    rules = load_rules(path)
    try:
        return parse(rules.sections)
    except RulesError as exc:
        raise RulesError(f"{rules.source}: {exc}") from None


def parse(doc: object) -> HealthRules:
    """The health rules from the whole parsed rules file (a mapping with `version` and `health`)."""
    if not isinstance(doc, Mapping):
        raise RulesError("expected a mapping at the top")
    version = doc.get("version")
    if isinstance(version, bool) or not isinstance(version, str | int | float) or version == "":
        raise RulesError("version: missing (it is stored with every status change)")
    health = doc.get("health")
    if not isinstance(health, Mapping):
        raise RulesError("health: missing, or not a mapping")
    _only(health, {"rules", "recovery", "warnings"}, "health")
    rules = _rules(health.get("rules"))
    recovery = _recovery(health.get("recovery"))
    escalate_after, max_levels = _warnings(health.get("warnings", {}))
    return HealthRules(str(version), rules, recovery, escalate_after, max_levels)


def _rules(raw: object) -> tuple[Rule, ...]:
    if not isinstance(raw, list) or not raw:
        raise RulesError("health.rules: expected a non-empty list of rules")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, Mapping) else None
        where = f"health.rules[{i}]" + (f" ({name})" if isinstance(name, str) else "")
        if not isinstance(item, Mapping):
            raise RulesError(f"{where}: expected a mapping")
        if not isinstance(name, str) or not _NAME.match(name):
            raise RulesError(
                f"{where}: name: expected lower_case letters, digits, _ (got {name!r})"
            )
        if name in seen:
            raise RulesError(f"{where}: name: {name!r} is used twice")
        seen.add(name)
        rules.append(_rule(item, name, where))
    return tuple(rules)


def _rule(item: Mapping[Any, Any], name: str, where: str) -> Rule:
    extra = sorted(
        str(k) for k in item if k not in {"name", "status", "when", "reason", "text", "warn"}
    )
    if extra:
        raise RulesError(
            f"{where}: {extra[0]}: unknown key (use name, status, when, reason, text, warn)"
        )
    status = item.get("status")
    if status not in (Status.YELLOW, Status.RED):
        raise RulesError(f"{where}: status: expected yellow or red, got {status!r}")
    if "when" not in item:
        raise RulesError(f"{where}: when: missing")
    try:
        when = conditions.parse(item["when"], "when")
    except ConditionError as exc:
        raise RulesError(f"{where}: {exc}") from None
    reason = item.get("reason", name)
    if not isinstance(reason, str) or not _NAME.match(reason):
        raise RulesError(f"{where}: reason: expected a reason code, got {reason!r}")
    texts = _texts(item.get("text"), reason, where)
    warn = item.get("warn", True)
    if not isinstance(warn, bool):
        raise RulesError(f"{where}: warn: expected true or false, got {warn!r}")
    return Rule(name, Status(status), when, reason, texts, warn)


def _texts(raw: object, reason: str, where: str) -> dict[str, str]:
    if raw is None:
        if reason not in KNOWN_REASONS:
            raise RulesError(
                f"{where}: text: reason {reason!r} is not built in "
                f"({', '.join(KNOWN_REASONS)}); give text: {{zh_CN: …, en: …}}"
            )
        return {}
    if not isinstance(raw, Mapping):
        raise RulesError(f"{where}: text: expected {{zh_CN: …, en: …}}")
    texts: dict[str, str] = {}
    for locale in TEXT_LOCALES:
        value = raw.get(locale)
        if not isinstance(value, str) or not value.strip():
            raise RulesError(f"{where}: text.{locale}: missing")
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise RulesError(f"{where}: text.{locale}: {exc}") from None
        unknown = sorted(names - TEXT_PLACEHOLDERS)
        if unknown:
            raise RulesError(
                f"{where}: text.{locale}: unknown placeholder {{{unknown[0]}}} "
                f"(use {', '.join(sorted(TEXT_PLACEHOLDERS))})"
            )
        texts[locale] = value
    extra = sorted(str(k) for k in raw if k not in TEXT_LOCALES)
    if extra:
        raise RulesError(f"{where}: text.{extra[0]}: unknown language (use zh_CN, en)")
    return texts


def _recovery(raw: object) -> dict[Status, Recovery]:
    if not isinstance(raw, Mapping):
        raise RulesError("health.recovery: expected {yellow: {normal_days: N}, red: {...}}")
    _only(raw, {"yellow", "red"}, "health.recovery")
    result: dict[Status, Recovery] = {}
    for status in (Status.YELLOW, Status.RED):
        item = raw.get(status.value)
        where = f"health.recovery.{status.value}"
        if not isinstance(item, Mapping):
            raise RulesError(f"{where}: missing")
        _only(item, {"normal_days", "clearance"}, where)
        days = item.get("normal_days")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 60:
            raise RulesError(f"{where}.normal_days: expected 1–60, got {days!r}")
        clearance = item.get("clearance", False)
        if not isinstance(clearance, bool):
            raise RulesError(f"{where}.clearance: expected true or false, got {clearance!r}")
        result[status] = Recovery(days, clearance)
    return result


def _warnings(raw: object) -> tuple[timedelta, int]:
    if not isinstance(raw, Mapping):
        raise RulesError("health.warnings: expected a mapping")
    _only(raw, {"escalate_after_minutes", "max_levels"}, "health.warnings")
    minutes = raw.get("escalate_after_minutes", 120)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 7 * 24 * 60:
        raise RulesError(
            f"health.warnings.escalate_after_minutes: expected minutes, got {minutes!r}"
        )
    levels = raw.get("max_levels", 3)
    if isinstance(levels, bool) or not isinstance(levels, int) or not 0 <= levels <= 10:
        raise RulesError(f"health.warnings.max_levels: expected 0–10, got {levels!r}")
    return timedelta(minutes=minutes), levels


def _only(raw: Mapping[Any, Any], allowed: set[str], where: str) -> None:
    extra = sorted(str(k) for k in raw if k not in allowed)
    if extra:
        raise RulesError(f"{where}.{extra[0]}: unknown key (use {', '.join(sorted(allowed))})")
