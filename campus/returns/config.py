"""The `returns:` section of the rules file: eligibility, the approval chain, auto-approval,
arrival tolerance, reminders and escalation. Errors name the entry: `returns.approval_chain[1].up`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from campus.rules import RulesError

STATUSES = ("green", "yellow", "red")
_KEYS = frozenset(
    {
        "min_checkin_days",
        "approval_chain",
        "auto_approve",
        "arrival_tolerance_days",
        "remind_after_hours",
        "escalate_after_hours",
        "max_escalations",
    }
)
_AUTO_KEYS = frozenset({"enabled", "statuses", "min_checkin_days", "risk_regions"})
_STEP_KEYS = frozenset({"name", "up"})


@dataclass(frozen=True, slots=True)
class Step:
    """An approval step: the responsible persons of the unit `up` levels above the applicant's."""

    name: str
    up: int


@dataclass(frozen=True, slots=True)
class AutoApprove:
    enabled: bool = False
    statuses: frozenset[str] = frozenset({"green"})
    min_checkin_days: int = 14
    risk_regions: tuple[str, ...] = ()  # departure regions (any part of the text) never auto

    def low_risk(self, region: str) -> bool:
        folded = region.casefold()
        return not any(r.casefold() in folded for r in self.risk_regions)

    def admits(self, status: str, checkin_days: int, region: str) -> bool:
        return (
            self.enabled
            and status in self.statuses
            and checkin_days >= self.min_checkin_days
            and self.low_risk(region)
        )


@dataclass(frozen=True, slots=True)
class ReturnRules:
    min_checkin_days: int = 14
    chain: tuple[Step, ...] = (Step("class", 0), Step("college", 1))
    auto: AutoApprove = field(default_factory=AutoApprove)
    arrival_tolerance_days: int = 1
    remind_after_hours: float = 24
    escalate_after_hours: float = 24
    max_escalations: int = 2


def _int(raw: Mapping[str, Any], key: str, default: int, where: str, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise RulesError(f"{where}.{key} {value!r} is not a whole number from {low} to {high}")
    return value


def _hours(raw: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 24 * 30:
        raise RulesError(f"{where}.{key} {value!r} is not a number of hours (0–720]")
    return float(value)


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RulesError(f"{where} must be a mapping")
    return raw


def _unknown(raw: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    extra = set(raw) - known
    if extra:
        raise RulesError(f"{where} has unknown keys {sorted(map(str, extra))}")


def parse_returns(sections: Mapping[str, Any], source: str = "rules file") -> ReturnRules:
    """The `returns:` section (absent: the defaults); raises RulesError naming the entry."""
    where = f"{source}: returns"
    raw = _mapping(sections.get("returns"), where)
    _unknown(raw, _KEYS, where)
    chain_raw = raw.get(
        "approval_chain", [{"name": "class", "up": 0}, {"name": "college", "up": 1}]
    )
    if not isinstance(chain_raw, list):
        raise RulesError(f"{where}.approval_chain must be a list of steps")
    chain = []
    for i, item in enumerate(chain_raw):
        at = f"{where}.approval_chain[{i}]"
        step = _mapping(item, at)
        _unknown(step, _STEP_KEYS, at)
        name = step.get("name", f"step{i + 1}")
        if not isinstance(name, str) or not name.strip() or len(name) > 40:
            raise RulesError(f"{at}.name {name!r} is not a short name")
        chain.append(Step(name.strip(), _int(step, "up", i, at, 0, 10)))
    if len(chain) > 5:
        raise RulesError(f"{where}.approval_chain has {len(chain)} steps, at most 5")
    auto_raw = _mapping(raw.get("auto_approve"), f"{where}.auto_approve")
    _unknown(auto_raw, _AUTO_KEYS, f"{where}.auto_approve")
    enabled = auto_raw.get("enabled", bool(auto_raw))
    if not isinstance(enabled, bool):
        raise RulesError(f"{where}.auto_approve.enabled {enabled!r} is not true or false")
    statuses = auto_raw.get("statuses", ["green"])
    if not isinstance(statuses, list) or not all(s in STATUSES for s in statuses):
        raise RulesError(f"{where}.auto_approve.statuses {statuses!r}: a list of {STATUSES}")
    regions = auto_raw.get("risk_regions", [])
    if not isinstance(regions, list) or not all(isinstance(r, str) and r for r in regions):
        raise RulesError(f"{where}.auto_approve.risk_regions must be a list of region names")
    min_days = _int(raw, "min_checkin_days", 14, where, 0, 90)
    return ReturnRules(
        min_checkin_days=min_days,
        chain=tuple(chain),
        auto=AutoApprove(
            enabled=enabled,
            statuses=frozenset(statuses),
            min_checkin_days=_int(
                auto_raw, "min_checkin_days", min_days, f"{where}.auto_approve", 0, 90
            ),
            risk_regions=tuple(regions),
        ),
        arrival_tolerance_days=_int(raw, "arrival_tolerance_days", 1, where, 0, 14),
        remind_after_hours=_hours(raw, "remind_after_hours", 24, where),
        escalate_after_hours=_hours(raw, "escalate_after_hours", 24, where),
        max_escalations=_int(raw, "max_escalations", 2, where, 0, 5),
    )
