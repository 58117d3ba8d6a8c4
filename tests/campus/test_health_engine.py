"""The rules engine as a pure function: each default rule, recovery, rule order, replay."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from campus.health.conditions import Facts
from campus.health.days import campus_day, day_start
from campus.health.engine import (
    Missed,
    Override,
    Reported,
    assess,
    forecast,
    is_normal,
    replay,
)
from campus.health.model import SYMPTOMS, Reason, Report, Standing, Status
from tests.health_support import SHANGHAI, shipped_rules

RULES = shipped_rules()
D0 = date(2026, 3, 2)


def at(day: date, hour: int = 10) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI)


def report(day: date = D0, temperature: float = 36.5, **fields: object) -> Report:
    return Report(
        day=day,
        temperature=round(temperature * 10),
        submitted_at=at(day),
        **fields,  # type: ignore[arg-type]
    )


def evaluate(r: Report, base: Standing = Standing(), history: tuple[Report, ...] = ()):  # type: ignore[no-untyped-def]
    return assess(RULES, base, Facts(r.day, r, (*history, r), 0), at(r.day))


# --- each default rule ------------------------------------------------------------------


def test_a_normal_report_stays_green() -> None:
    result = evaluate(report())
    assert result.standing.status is Status.GREEN and not result.fired


def test_fever_is_yellow_from_37_3() -> None:
    assert evaluate(report(temperature=37.2)).standing.status is Status.GREEN
    result = evaluate(report(temperature=37.3))
    assert result.standing.status is Status.YELLOW
    assert [r.rule for r in result.standing.reasons] == ["fever"]
    assert result.standing.reasons[0].temperature == 373
    assert result.new_causes == result.fired


def test_fever_with_a_symptom_is_red() -> None:
    result = evaluate(report(temperature=37.5, symptoms=frozenset({"cough"})))
    assert result.standing.status is Status.RED
    assert [r.rule for r in result.standing.reasons] == ["fever_with_symptom"]
    assert result.standing.reasons[0].symptoms == ("cough",)


def test_a_symptom_without_fever_stays_green() -> None:
    assert evaluate(report(symptoms=frozenset({"cough"}))).standing.status is Status.GREEN


def test_contact_with_a_case_is_red() -> None:
    result = evaluate(report(contact=True))
    assert result.standing.status is Status.RED
    assert [r.rule for r in result.standing.reasons] == ["contact"]


def test_travel_is_yellow_for_14_days() -> None:
    travel = report(D0, travel=True, location="elsewhere", region="武汉")
    result = evaluate(travel)
    assert result.standing.status is Status.YELLOW
    assert result.standing.reasons[0].region == "武汉"
    for offset, fires in ((13, True), (14, False)):
        later = report(D0 + timedelta(days=offset))
        facts = Facts(later.day, later, (travel, later), 0)
        assert bool(assess(RULES, Standing(), facts, at(later.day)).fired) is fires


def test_two_missed_days_are_yellow() -> None:
    one = assess(RULES, Standing(), Facts(D0, None, (), 1), at(D0))
    assert one.standing.status is Status.GREEN
    two = assess(RULES, Standing(), Facts(D0, None, (), 2), at(D0))
    assert two.standing.status is Status.YELLOW
    reason = two.standing.reasons[0]
    assert (reason.rule, reason.days, reason.day) == ("missed_reports", 2, D0 - timedelta(days=1))


def test_a_known_cause_is_not_a_new_one() -> None:
    first = evaluate(report(temperature=38.0))
    again = evaluate(report(D0 + timedelta(days=1), temperature=38.0), first.standing)
    assert again.standing.status is Status.YELLOW and again.fired and not again.new_causes


# --- recovery ---------------------------------------------------------------------------


def _run(days: list[str]) -> list[Status]:
    """Play a sequence of days ('n' normal, 'f' fever, 'c' contact, 'm' missed) through replay."""
    events: list[Reported | Missed] = []
    out = []
    for i, kind in enumerate(days):
        day = D0 + timedelta(days=i)
        if kind == "m":
            events.append(Missed(day, at(day + timedelta(days=1), 0)))
        else:
            events.append(Reported(report(day, 38.0 if kind == "f" else 36.5, contact=kind == "c")))
        out.append(replay(RULES, events).status)
    return out


def _reference(days: list[str]) -> list[Status]:
    """The default rules, written out by hand for normal / fever / contact / missed days."""
    status, streak, missed, out = Status.GREEN, 0, 0, []
    for kind in days:
        if kind == "f":
            status = max(status, Status.YELLOW, key=lambda s: s.severity)
            streak = missed = 0
        elif kind == "c":
            status, streak, missed = Status.RED, 0, 0
        elif kind == "m":
            missed, streak = missed + 1, 0
            if missed >= 2:
                status = max(status, Status.YELLOW, key=lambda s: s.severity)
        else:
            missed, streak = 0, streak + 1
            if status is Status.YELLOW and streak >= 7:
                status = Status.GREEN
        out.append(status)
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from("nnnnnfmc"), min_size=1, max_size=40))
def test_recovery_counting_matches_the_rules_written_out(days: list[str]) -> None:
    assert _run(days) == _reference(days)


def test_yellow_turns_green_on_the_seventh_normal_day() -> None:
    statuses = _run(["f", *"n" * 7])
    assert statuses[-2] is Status.YELLOW and statuses[-1] is Status.GREEN


def test_red_waits_for_a_health_officer_after_14_normal_days() -> None:
    events: list[Reported | Missed | Override] = [Reported(report(D0, contact=True))]
    last = None
    for i in range(1, 30):
        r = report(D0 + timedelta(days=i))
        history = tuple(e.report for e in events if isinstance(e, Reported))[-13:]
        standing = replay(RULES, events)
        last = assess(RULES, standing, Facts(r.day, r, (*history, r), 0), at(r.day))
        assert last.standing.status is Status.RED
        assert last.awaiting_clearance is (i >= 14)
        events.append(Reported(r))
    cleared = Standing(Status.GREEN, at(D0 + timedelta(days=30)), ())
    events.append(Override(at(D0 + timedelta(days=30)), cleared))
    assert replay(RULES, events).status is Status.GREEN


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from("nnnfm"), min_size=1, max_size=25))
def test_the_forecast_is_the_number_of_normal_days_needed(days: list[str]) -> None:
    events: list[Reported | Missed] = []
    for i, kind in enumerate(days):
        day = D0 + timedelta(days=i)
        if kind == "m":
            events.append(Missed(day, at(day + timedelta(days=1), 0)))
        else:
            events.append(Reported(report(day, 38.0 if kind == "f" else 36.5)))
    standing = replay(RULES, events)
    # After a reported day, "today" is that day; after a missed (rolled-over) one, the next.
    reported_today = days[-1] != "m"
    today = D0 + timedelta(days=len(days) - (1 if reported_today else 0))
    history = [e.report for e in events if isinstance(e, Reported)]
    predicted = forecast(RULES, standing, history, today, reported_today).normal_days_left
    assert predicted is not None
    # Play exactly that many normal days: green then, and not one day before.
    first = today + timedelta(days=1) if reported_today else today
    after = list(events)
    statuses = []
    for k in range(predicted):
        after.append(Reported(report(first + timedelta(days=k))))
        statuses.append(replay(RULES, after).status)
    if predicted == 0:
        assert standing.status is Status.GREEN
    else:
        assert statuses[-1] is Status.GREEN
        assert all(s is not Status.GREEN for s in statuses[:-1])


# --- order of rules, replay -------------------------------------------------------------

reports = st.builds(
    lambda t, s, c, tr: Report(D0, t, frozenset(s), contact=c, travel=tr, submitted_at=at(D0)),
    st.integers(340, 430),
    st.sets(st.sampled_from(SYMPTOMS), max_size=3),
    st.booleans(),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(reports, st.integers(0, 5), st.sampled_from(list(Status)), st.randoms())
def test_the_order_of_the_rules_does_not_matter(
    r: Report, missed: int, before: Status, rnd: random.Random
) -> None:
    shuffled = list(RULES.rules)
    rnd.shuffle(shuffled)
    other = RULES.reordered(tuple(shuffled))
    base = Standing(before, at(D0 - timedelta(days=1)), ())
    for facts in (Facts(D0, r, (r,), 0), Facts(D0, None, (), missed)):
        a = assess(RULES, base, facts, at(D0))
        b = assess(other, base, facts, at(D0))
        assert a.standing.status is b.standing.status
        assert {x.rule for x in a.standing.reasons} == {x.rule for x in b.standing.reasons}


@settings(max_examples=200, deadline=None)
@given(reports)
def test_a_day_is_normal_exactly_when_no_rule_fires_on_it(r: Report) -> None:
    fired = assess(RULES, Standing(), Facts(D0, r, (r,), 0), at(D0)).fired
    assert is_normal(RULES, r) is (not fired)


def test_reasons_round_trip_through_json() -> None:
    from campus.health.model import reasons_from_text, reasons_to_text

    reasons = (
        Reason("fever", "fever", D0, temperature=381),
        Reason("travel", "travel", D0, region="武汉"),
        Reason("override", "override", D0, note="核酸阴性"),
        Reason("missed_reports", "missed_reports", D0, days=3),
    )
    assert reasons_from_text(reasons_to_text(reasons)) == reasons


# --- the campus day ---------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)))
def test_the_campus_day_turns_at_the_campus_midnight(naive: datetime) -> None:
    instant = naive.replace(tzinfo=UTC)
    day = campus_day(instant, SHANGHAI)
    assert day == (naive + timedelta(hours=8)).date()  # Shanghai has no daylight saving
    assert day_start(day, SHANGHAI) <= instant < day_start(day + timedelta(days=1), SHANGHAI)
    before_midnight = day_start(day, SHANGHAI) - timedelta(microseconds=1)
    assert campus_day(before_midnight, SHANGHAI) == day - timedelta(days=1)
