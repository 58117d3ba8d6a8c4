"""The rules engine: a pure function from (standing before, the day's facts) to the standing after.

- A rule fires when its condition holds; the day's trigger is the worst status that fired.
- A worse trigger raises the status at once; an equal one adds its reasons.
- Otherwise the status returns to the trigger only after the recovery's run of consecutive
  normal days (a day is normal when its own report, read alone, fires no rule); a recovery
  with `clearance` then waits for a health officer instead.
- The outcome does not depend on the order of the rules: reasons are listed in file order.

`replay` folds the same function over stored inputs, so any status can be recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import cache

from campus.health.conditions import (
    AllOf,
    AnyOf,
    Condition,
    Facts,
    MissedDays,
    Not,
    ReportsWithin,
    holds,
    matching_reports,
)
from campus.health.model import Reason, Report, Standing, Status, worst
from campus.health.rules import HealthRules, Rule

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Assessment:
    standing: Standing  # after this day's facts
    changed: bool  # the status differs from the standing before
    fired: tuple[Reason, ...]  # every rule that fired
    new_causes: tuple[Reason, ...]  # fired rules that were not already a reason: warn these
    normal_days: int  # consecutive normal days ending with this day (0 unless recovering)
    awaiting_clearance: bool  # recovered by days, waiting for a health officer


@dataclass(frozen=True, slots=True)
class Forecast:
    """How many more normal days (reports) until green; None when the rules never get there."""

    normal_days_left: int | None
    clearance_needed: bool = False


def fire(rules: HealthRules, facts: Facts) -> list[tuple[Rule, Reason]]:
    return [(rule, _evidence(rule, facts)) for rule in rules.rules if holds(rule.when, facts)]


def is_normal(rules: HealthRules, report: Report) -> bool:
    """A day whose own report, read without history, fires no rule."""
    alone = Facts(report.day, report, (report,), 0)
    return not any(holds(rule.when, alone) for rule in rules.rules)


NormalTest = Callable[[Report], bool]


def normal_streak(rules: HealthRules, facts: Facts, normal: NormalTest | None = None) -> int:
    normal = normal or (lambda r: is_normal(rules, r))
    by_day = {r.day: r for r in facts.history}
    if facts.report is not None:
        by_day[facts.day] = facts.report
    count, day, limit = 0, facts.day, rules.lookback_days
    while count < limit and (r := by_day.get(day)) and normal(r):
        count += 1
        day -= ONE_DAY
    return count


def assess(
    rules: HealthRules,
    base: Standing,
    facts: Facts,
    now: datetime,
    normal: NormalTest | None = None,
) -> Assessment:
    fired = fire(rules, facts)
    reasons = tuple(reason for _, reason in fired)
    trigger = worst([rule.status for rule, _ in fired])
    streak = 0  # counted only when it matters: on the way back down
    known = {r.rule for r in base.reasons}
    new_causes = tuple(reason for rule, reason in fired if rule.warn and reason.rule not in known)
    awaiting = False
    if trigger.severity > base.status.severity:
        after = Standing(trigger, now, reasons)
    elif base.status is Status.GREEN:
        after = Standing(Status.GREEN, base.since, ())
    elif trigger is base.status:
        after = replace(base, reasons=_merge(base.reasons, reasons))
    else:
        recovery = rules.recovery[base.status]
        streak = normal_streak(rules, facts, normal)
        if streak < recovery.normal_days:
            after = replace(base, reasons=_merge(base.reasons, reasons))
        elif recovery.clearance:
            after = replace(base, reasons=_merge(base.reasons, reasons))
            awaiting = True
        else:
            after = Standing(trigger, now, reasons)
    return Assessment(
        standing=after,
        changed=after.status is not base.status,
        fired=reasons,
        new_causes=new_causes,
        normal_days=streak,
        awaiting_clearance=awaiting,
    )


def forecast(
    rules: HealthRules,
    standing: Standing,
    history: Sequence[Report],
    today: date,
    reported_today: bool,
) -> Forecast:
    """Normal days still needed, found by playing normal reports forward from today."""
    if standing.status is Status.GREEN:
        return Forecast(0)
    normal = cache(lambda r: is_normal(rules, r))  # the same days are judged again and again
    end = today if reported_today else today - ONE_DAY
    recovery = rules.recovery[standing.status]
    done = normal_streak(rules, Facts(end, None, tuple(history), 0), normal)
    if recovery.clearance and done >= recovery.normal_days:
        return Forecast(0, clearance_needed=True)
    reports = list(history)
    current = standing
    first = end + ONE_DAY
    span = rules.lookback_days * ONE_DAY
    horizon = rules.lookback_days + max(r.normal_days for r in rules.recovery.values()) + 1
    for k in range(1, horizon + 1):
        day = first + (k - 1) * ONE_DAY
        report = Report.normal(day)
        reports.append(report)
        window = tuple(r for r in reports if r.day > day - span)
        result = assess(rules, current, Facts(day, report, window, 0), _NOON, normal)
        if result.awaiting_clearance:
            return Forecast(k, clearance_needed=True)
        if result.standing.status is Status.GREEN:
            return Forecast(k)
        current = result.standing
    return Forecast(None)


_NOON = datetime(2000, 1, 1, 12)  # the forecast never stores a time


def _merge(old: tuple[Reason, ...], new: tuple[Reason, ...]) -> tuple[Reason, ...]:
    """Old reasons stay (newer evidence of the same rule replaces its entry); new ones follow."""
    latest = {r.rule: r for r in new}
    merged = [latest.pop(r.rule, r) for r in old]
    merged += [r for r in new if r.rule in latest]
    return tuple(merged)


def _evidence(rule: Rule, facts: Facts) -> Reason:
    """The reason a fired rule gives: the facts it fired on."""
    missed = _find(rule.when, MissedDays)
    if missed is not None:
        first = facts.day - (max(facts.missed_days, 1) - 1) * ONE_DAY
        return Reason(rule.name, rule.reason, first, days=facts.missed_days)
    within = _find(rule.when, ReportsWithin)
    report = facts.report
    if isinstance(within, ReportsWithin):
        matches = matching_reports(within, facts)
        report = matches[-1] if matches else report
    if report is None:
        return Reason(rule.name, rule.reason, facts.day)
    return Reason(
        rule.name,
        rule.reason,
        report.day,
        temperature=report.temperature,
        symptoms=tuple(sorted(report.symptoms)),
        region=report.region,
    )


def _find(cond: Condition, kind: type) -> Condition | None:
    if isinstance(cond, kind):
        return cond
    if isinstance(cond, AllOf | AnyOf):
        for part in cond.parts:
            found = _find(part, kind)
            if found is not None:
                return found
    if isinstance(cond, Not):
        return None  # what a negation matched is no evidence
    return None


# --- replay: the status recomputed from stored inputs ----------------------------------


@dataclass(frozen=True, slots=True)
class Override:
    at: datetime
    standing: Standing


@dataclass(frozen=True, slots=True)
class Reported:
    report: Report  # every report, replaced ones too; submitted_at orders them
    revision: int = 1  # orders the reports of one day sent in the same instant


@dataclass(frozen=True, slots=True)
class Missed:
    day: date
    at: datetime  # when the roll-over of that day counted it


Event = Override | Reported | Missed


def event_time(event: Event) -> datetime:
    if isinstance(event, Reported):
        assert event.report.submitted_at is not None
        return event.report.submitted_at
    return event.at


def _order(event: Event) -> tuple[datetime, int, int]:
    """By time; in one instant overrides first, then reports by revision, then missed days."""
    if isinstance(event, Override):
        return (event.at, 0, 0)
    if isinstance(event, Reported):
        return (event_time(event), 1, event.revision)
    return (event.at, 2, 0)


def replay(rules: HealthRules, events: Iterable[Event], start: Standing | None = None) -> Standing:
    """Fold the engine over a person's stored events, oldest first."""
    standing = start or Standing()
    reports: dict[date, Report] = {}
    missed = 0
    for event in sorted(events, key=_order):
        if isinstance(event, Override):
            standing, reports, missed = event.standing, {}, 0
            continue
        day = event.report.day if isinstance(event, Reported) else event.day
        if isinstance(event, Reported):
            reports[day] = event.report
            missed, report = 0, event.report
        else:
            missed, report = missed + 1, None
        first = day - rules.lookback_days * ONE_DAY
        window = tuple(r for d, r in sorted(reports.items()) if first < d <= day)
        facts = Facts(day, report, window, missed)
        standing = assess(rules, standing, facts, event_time(event)).standing
    return standing
