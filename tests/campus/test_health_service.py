"""Check-in, status, overrides, warnings, escalation, roll-over, reminders and summaries
against a real database, on a frozen clock in the campus time zone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select

from campus.health.checkin import Draft, Outcome
from campus.health.model import SYMPTOMS, Status
from campus.health.status import OverrideOutcome
from storage.models import (
    AuditEntry,
    HealthReport,
    HealthReportRevision,
    HealthWarning,
    StatusChange,
    WeChatAccount,
)
from tests.health_support import SHANGHAI, START, Campus, open_campus


@pytest.fixture
async def campus(tmp_path: Path) -> AsyncIterator[Campus]:
    async for c in open_campus(f"sqlite+aiosqlite:///{tmp_path}/h.db"):
        yield c


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Campus]:
    """SQLite and a real PostgreSQL, for the SQL that differs (ON CONFLICT, recursive CTE, …)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    else:
        url = request.getfixturevalue("postgres_url")
    async for c in open_campus(url):
        yield c


def normal(**kw: object) -> Draft:
    return Draft(365, **kw)  # type: ignore[arg-type]


def fever(t: int = 380, **kw: object) -> Draft:
    return Draft(t, **kw)  # type: ignore[arg-type]


async def report(c: Campus, no: str, draft: Draft):  # type: ignore[no-untyped-def]
    return await c.kit.checkins.submit(c.ids[no], draft)


async def next_day(c: Campus, hour: int = 10, roll: bool = True) -> None:
    """The clock to `hour` o'clock of the next campus day, rolling over the day just ended."""
    today = c.now.date()
    c.at(
        datetime.combine(today + timedelta(days=1), datetime.min.time(), SHANGHAI)
        + timedelta(minutes=5)
    )
    if roll:
        await c.kit.rollovers.run()
    c.at(c.now.replace(hour=hour, minute=0))


# --- check-in ---------------------------------------------------------------------------


async def test_a_quick_report_is_normal_and_keeps_the_last_location(campus: Campus) -> None:
    first = await report(campus, "S001", Draft(366, location="elsewhere", region="武汉"))
    assert first.outcome is Outcome.RECORDED and first.standing.status is Status.GREEN
    await next_day(campus)
    quick = await report(campus, "S001", Draft(364, source="quick"))
    assert quick.report is not None
    assert (quick.report.location, quick.report.region) == ("elsewhere", "武汉")
    assert not quick.report.symptoms and not quick.report.contact and not quick.report.travel


async def test_one_report_a_day_a_second_replaces_it_and_history_is_kept(campus: Campus) -> None:
    await report(campus, "S001", normal())
    campus.later(minutes=5)
    second = await report(campus, "S001", fever())
    assert second.replaced and second.standing.status is Status.YELLOW
    assert await campus.status("S001") == "yellow"
    assert await campus.scalar(select(func.count()).select_from(HealthReport)) == 1
    assert await campus.scalar(select(HealthReport.revision)) == 2
    kept = await campus.scalar(select(HealthReportRevision.temperature))
    assert kept == 365
    change = await campus.scalar(select(StatusChange))
    assert (change.from_status, change.to_status, change.cause) == ("green", "yellow", "report")
    assert change.rule_version == campus.kit.rules.version and '"fever"' in change.reasons


async def test_a_second_report_cannot_undo_a_raised_status(campus: Campus) -> None:
    await report(campus, "S001", fever())
    campus.later(minutes=1)
    again = await report(campus, "S001", normal())
    assert again.standing.status is Status.YELLOW
    assert again.forecast is not None and again.forecast.normal_days_left == 6


async def test_reports_belong_to_the_campus_day(campus: Campus) -> None:
    # 23:59 and 00:01 Shanghai are the same UTC day (15:59 and 16:01 UTC) but two campus days.
    campus.at(START.replace(hour=23, minute=59))
    await report(campus, "S001", normal())
    campus.later(minutes=2)
    second = await report(campus, "S001", normal())
    assert not second.replaced
    days = (await campus.query(select(HealthReport.day))).scalars().all()
    assert sorted(days) == [START.date(), START.date() + timedelta(days=1)]


async def test_same_as_yesterday_repeats_yesterday(campus: Campus) -> None:
    assert (await campus.kit.checkins.same_as_yesterday(campus.ids["S001"])).outcome is (
        Outcome.NOTHING_YESTERDAY
    )
    await report(campus, "S001", Draft(367, frozenset({"cough"}), "city"))
    await next_day(campus)
    same = await campus.kit.checkins.same_as_yesterday(campus.ids["S001"])
    assert same.report is not None and same.report.day == campus.now.date()
    assert (same.report.temperature, same.report.symptoms, same.report.location) == (
        367,
        frozenset({"cough"}),
        "city",
    )


async def test_yellow_turns_green_after_seven_normal_days(campus: Campus) -> None:
    await report(campus, "S001", fever())
    for day in range(1, 8):
        await next_day(campus)
        result = await report(campus, "S001", normal())
        expected = Status.GREEN if day == 7 else Status.YELLOW
        assert result.standing.status is expected, day
    view = await campus.kit.status.view(campus.ids["S001"])
    assert view is not None and view.standing.status is Status.GREEN


# --- overrides --------------------------------------------------------------------------


async def test_red_needs_a_health_officers_clearance(campus: Campus) -> None:
    await report(campus, "S001", normal(contact=True))
    await campus.pushes()
    for _day in range(14):
        await next_day(campus)
        result = await report(campus, "S001", normal())
    assert result.standing.status is Status.RED
    assert result.forecast is not None and result.forecast.clearance_needed
    assert result.forecast.normal_days_left == 0
    asked = [p for p in await campus.pushes() if p[1] == "health_clearance"]
    assert [p[0] for p in asked] == ["H001"] and "设置状态 S001 green" in asked[0][2]

    refused = await campus.kit.status.override(
        "S001", Status.GREEN, "不行", actor="person:x", officer_id=campus.ids["F001"]
    )
    assert refused.outcome is OverrideOutcome.NOT_ALLOWED
    assert await campus.status("S001") == "red"

    done = await campus.kit.status.override(
        "S001", Status.GREEN, "核酸阴性，解除", actor="person:h", officer_id=campus.ids["H001"]
    )
    assert (done.outcome, done.before, done.after) == (
        OverrideOutcome.DONE,
        Status.RED,
        Status.GREEN,
    )
    assert await campus.status("S001") == "green"
    audit = await campus.scalar(select(AuditEntry).where(AuditEntry.action == "status_override"))
    assert audit.actor == "person:h" and "red -> green" in audit.reason
    told = await campus.pushes()
    assert ("S001", "status_override") in [(p[0], p[1]) for p in told]


async def test_an_override_starts_afresh(campus: Campus) -> None:
    await report(campus, "S001", normal(travel=True))  # yellow for 14 days
    await campus.kit.status.override("S001", Status.GREEN, "low-risk area now", actor="cli")
    campus.later(minutes=10)
    again = await report(campus, "S001", normal())  # the travel report is before the override
    assert again.standing.status is Status.GREEN
    await campus.kit.status.override("S002", Status.RED, "close contact", actor="cli")
    pushed = await campus.pushes()
    warned = {p[0] for p in pushed if p[1] == "health_warning"}
    assert warned == {"F001"}  # the counsellor hears of a red set by hand
    assert ("S002", "status_override") in [(p[0], p[1]) for p in pushed]


# --- warnings ---------------------------------------------------------------------------


async def test_a_warning_once_per_cause_per_day_to_person_and_counsellor(any_db: Campus) -> None:
    c = any_db
    await report(c, "S001", fever(381))
    pushed = await c.pushes()
    assert sorted((p[0], p[1]) for p in pushed) == [
        ("F001", "health_warning"),
        ("S001", "health_notice"),
    ]
    warning = next(text for no, _, text in pushed if no == "F001")
    assert "张*丰" in warning and "张三丰" not in warning and "S001" in warning
    assert "38.1" in warning and "收到" in warning
    c.later(minutes=30)
    await report(c, "S001", fever(385))  # the same cause again today: no second warning
    await next_day(c)
    await report(c, "S001", fever(383))  # still the same cause of this yellow
    assert await c.pushes() == []
    await report(c, "S001", normal(contact=True))  # a new cause
    pushed = await c.pushes()
    assert {p[0] for p in pushed} == {"F001", "S001"}
    assert await c.scalar(select(func.count()).select_from(HealthWarning)) == 2


async def test_guards_and_others_hear_nothing(campus: Campus) -> None:
    await report(campus, "S001", fever(390, symptoms=frozenset({"cough"})))
    recipients = {p[0] for p in await campus.pushes()}
    assert recipients == {"S001", "F001"}
    assert not recipients & {"G001", "S002", "T001", "H001"}


async def test_a_person_level_responsible_is_warned(campus: Campus) -> None:
    await report(campus, "W001", fever())
    pushed = await campus.pushes()
    # F004 hosts W001 and heads W001's unit: told once, in English.
    assert [(p[0], p[1]) for p in pushed if p[0] != "W001"] == [("F004", "health_warning")]
    assert "Health warning" in next(p[2] for p in pushed if p[0] == "F004")


async def test_nobody_is_warned_twice_up_the_tree(campus: Campus) -> None:
    await report(campus, "P001", fever())
    first = await campus.pushes()
    assert sorted(p[0] for p in first if p[1] == "health_warning") == ["F001", "F002"]
    campus.later(hours=2, minutes=1)
    assert await campus.kit.warnings.escalate_due() == 1
    # The dean hosts P001 and heads the college: the next rung up is the university.
    assert [p[0] for p in await campus.pushes()] == ["A001"]


async def test_unacknowledged_warnings_climb_the_unit_tree(any_db: Campus) -> None:
    c = any_db
    await report(c, "S001", fever())
    await c.pushes()
    c.later(hours=1, minutes=59)
    assert await c.kit.warnings.escalate_due() == 0
    c.later(minutes=2)
    assert await c.kit.warnings.escalate_due() == 1
    college = await c.pushes()
    assert [(p[0], p[1]) for p in college] == [("F002", "health_warning")]
    assert "120" in college[0][2] and "张*丰" in college[0][2]
    c.later(hours=2, minutes=1)
    assert await c.kit.warnings.escalate_due() == 1
    assert [p[0] for p in await c.pushes()] == ["A001"]
    c.later(hours=3)
    assert await c.kit.warnings.escalate_due() == 0  # the top of the tree
    assert await c.pushes() == []


async def test_an_acknowledged_warning_stops(any_db: Campus) -> None:
    c = any_db
    await report(c, "S001", fever())
    warning_id = await c.scalar(select(HealthWarning.id))
    assert await c.kit.warnings.acknowledge(c.ids["S002"], [warning_id]) == 0  # not theirs
    assert await c.kit.warnings.open_for(c.ids["F001"]) == 1
    assert await c.kit.warnings.acknowledge(c.ids["F001"], [warning_id]) == 1
    assert await c.kit.warnings.acknowledge(c.ids["F001"]) == 0  # already done
    c.later(hours=3)
    assert await c.kit.warnings.escalate_due() == 0
    acked = await c.scalar(select(HealthWarning))
    assert acked.acked_by_id == c.ids["F001"] and acked.next_escalation_at is None


async def test_the_escalation_delay_comes_from_the_rules(tmp_path: Path) -> None:
    from campus.rules import load_rules
    from tests.health_support import parse

    sections = dict(load_rules().sections)
    health = dict(sections["health"])
    health["warnings"] = {"escalate_after_minutes": 30, "max_levels": 1}
    rules = parse({**sections, "health": health})
    async for c in open_campus(f"sqlite+aiosqlite:///{tmp_path}/e.db", rules):
        await report(c, "S001", fever())
        c.later(minutes=31)
        assert await c.kit.warnings.escalate_due() == 1
        c.later(minutes=31)
        assert await c.kit.warnings.escalate_due() == 0  # max_levels: 1


# --- the day roll-over ------------------------------------------------------------------


async def test_two_missed_days_turn_yellow_at_the_roll_over(any_db: Campus) -> None:
    c = any_db
    everyone = [no for no in c.ids if no != "S002"]
    for no in everyone:
        await report(c, no, normal())
    await next_day(c)
    assert await c.status("S002") == "green"  # one missed day
    for no in everyone:
        await report(c, no, normal())
    await c.pushes()
    await next_day(c)
    assert await c.status("S002") == "yellow"
    assert {await c.status(no) for no in everyone} == {"green"}
    change = await c.scalar(select(StatusChange).where(StatusChange.cause == "rollover"))
    assert change.to_status == "yellow" and "missed_reports" in change.reasons
    pushed = await c.pushes()
    assert sorted((p[0], p[1]) for p in pushed) == [
        ("F001", "health_warning"),
        ("S002", "health_notice"),
    ]
    assert "连续 2 天未打卡" in next(p[2] for p in pushed if p[0] == "S002")
    # Running it again changes nothing.
    again = await c.kit.rollovers.run()
    assert again == []
    assert await c.pushes() == []


async def test_the_roll_over_catches_up_missed_days(campus: Campus) -> None:
    await campus.kit.rollovers.run()  # rolls over the day before START
    for no in campus.ids:
        await report(campus, no, normal())
    campus.at(START + timedelta(days=3))  # three days later, no roll-over in between
    days = await campus.kit.rollovers.run()
    assert [d.day for d in days] == [START.date() + timedelta(days=i) for i in range(3)]
    assert [d.missed for d in days] == [0, len(campus.ids), len(campus.ids)]
    assert await campus.status("S001") == "yellow"
    with pytest.raises(ValueError, match="has not ended"):
        await campus.kit.rollovers.roll(campus.now.date(), campus.now)


async def test_the_recomputed_status_agrees_with_the_stored_one(campus: Campus) -> None:
    script = [
        ("S001", fever()),
        ("S002", normal(contact=True)),
        ("T001", normal(travel=True, location="elsewhere", region="Hubei")),
    ]
    for no, draft in script:
        await report(campus, no, draft)
    for _ in range(9):
        await next_day(campus)
        await report(campus, "S001", normal())
        await report(campus, "T001", normal())
    await campus.kit.status.override("S002", Status.YELLOW, "retest pending", actor="cli")
    await next_day(campus)
    await next_day(campus)  # S002 misses two days after the override
    for no in ("S001", "S002", "T001", "F001"):
        result = await campus.kit.status.recompute(no)
        assert result is not None and result.agrees, (no, result)
    assert await campus.status("S001") == "green"
    assert await campus.status("S002") == "yellow"


# --- reminders and summaries ------------------------------------------------------------


async def test_reminders_once_per_slot_a_day(campus: Campus) -> None:
    async with campus.sessions.begin() as s:
        for no in ("S001", "S002", "T001"):
            s.add(WeChatAccount(openid=f"o_{no}", person_id=campus.ids[no]))
    await report(campus, "S001", normal())
    assert await campus.kit.reminders.remind("morning") == 2
    assert await campus.kit.reminders.remind("morning") == 0
    await report(campus, "S002", normal())
    assert await campus.kit.reminders.remind("afternoon") == 1
    texts = {p[0]: p[2] for p in await campus.pushes()}
    assert set(texts) == {"S002", "T001"}
    assert "打卡 36.5" in texts["S002"] and "checkin 36.5" in texts["T001"]


async def test_the_summary_lists_the_missing_masked(any_db: Campus) -> None:
    c = any_db
    await report(c, "S001", normal())
    await report(c, "F001", normal())
    assert await c.kit.reminders.summarize() >= 3
    summaries = {p[0]: p[2] for p in await c.pushes() if p[1] == "health_summary"}
    counsellor = summaries["F001"]
    assert "李*" in counsellor and "S002" in counsellor and "J*** S****" in counsellor
    assert "张*丰" not in counsellor and "李四" not in counsellor  # reported, and masked
    assert "F001" not in counsellor  # not a summary of oneself
    assert "4 人中已打卡 1 人" in counsellor  # S001, S002, T001, P001 (not F001 themself)
    assert "S002" in summaries["F002"]  # the college sees its classes
    assert "W001" in summaries["F004"]  # a host sees the persons they host
    assert "G001" not in summaries  # guards get none


# --- conditions as SQL (the roll-over loads only what history rules count) ---------------

CONDITIONS = [
    {"field": "temperature", "op": ">=", "value": 37.3},
    {"field": "temperature", "op": "<", "value": 36.0},
    {"field": "symptoms", "op": "any_of", "value": ["cough", "sore_throat"]},
    {"field": "symptoms", "op": "all_of", "value": ["fever", "cough"]},
    {"field": "symptoms", "op": "none_of", "value": ["taste_smell"]},
    {"field": "symptoms", "op": "empty"},
    {"field": "symptoms", "op": "not_empty"},
    {"field": "location", "op": "in", "value": ["city", "elsewhere"]},
    {"field": "location", "op": "!=", "value": "campus"},
    {"field": "region", "op": "==", "value": "湖北"},
    {"field": "region", "op": "not_in", "value": ["湖北", "上海"]},
    {"field": "region", "op": "not_empty"},
    {"field": "travel", "op": "==", "value": True},
    {"field": "contact", "op": "!=", "value": True},
    {
        "any": [
            {"field": "travel", "op": "==", "value": True},
            {"not": {"all": [{"field": "contact", "op": "==", "value": False}]}},
        ]
    },
]


async def test_conditions_select_in_sql_what_the_engine_selects(any_db: Campus) -> None:
    import random

    from campus.health import conditions, store
    from campus.health.conditions import Facts

    rnd = random.Random(7)
    rows = []
    for i in range(300):
        location = rnd.choice(["campus", "city", "elsewhere"])
        rows.append(
            {
                "person_id": any_db.ids["S001"],
                "day": START.date() - timedelta(days=i),
                "temperature": rnd.randint(350, 400),
                "symptoms": ";".join(sorted(rnd.sample(list(SYMPTOMS), rnd.randint(0, 3)))),
                "location": location,
                "region": rnd.choice(["", "湖北", "上海", "a_b%"]) if location != "campus" else "",
                "contact": rnd.random() < 0.2,
                "travel": rnd.random() < 0.2,
                "source": "form",
                "revision": 1,
                "submitted_at": START,
            }
        )
    async with any_db.sessions.begin() as s:
        await s.execute(insert(HealthReport), rows)
    async with any_db.sessions() as s:
        stored = (await s.execute(select(HealthReport))).scalars().all()
        for raw in CONDITIONS:
            cond = conditions.parse(raw)
            in_sql = set(
                (await s.execute(select(HealthReport.id).where(store.where_sql(cond)))).scalars()
            )
            in_python = {
                r.id
                for r in stored
                if conditions.holds(cond, Facts(r.day, store.report_from_row(r), (), 0))
            }
            assert in_sql == in_python, raw


# --- check-ins that arrive together (one batch) -----------------------------------------


def _count_batch_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of persons each batch read asked for, in order."""
    from campus.health import store

    reads: list[int] = []
    load = store.load_for_checkin

    async def counted(session, person_ids, first, last):  # type: ignore[no-untyped-def]
        reads.append(len(person_ids))
        return await load(session, person_ids, first, last)

    monkeypatch.setattr(store, "load_for_checkin", counted)
    return reads


async def test_check_ins_arriving_together_are_each_decided_and_written(
    any_db: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch mixing a plain report, a fever (status change, warnings), a replacement, a
    person asking twice and an unknown person gives each the answer it would get alone."""
    import asyncio

    c = any_db
    reads = _count_batch_reads(monkeypatch)
    await report(c, "S002", normal())  # to be replaced in the batch
    c.later(minutes=5)
    checkins = c.kit.checkins
    results = await asyncio.gather(
        checkins.submit(c.ids["S001"], normal()),
        checkins.submit(c.ids["T001"], fever(382)),
        checkins.submit(c.ids["S002"], normal(contact=True)),
        checkins.submit(c.ids["W001"], normal()),
        checkins.submit(c.ids["W001"], fever(379)),  # the same person again: replaces
        checkins.submit(999_999, normal()),
        checkins.same_as_yesterday(c.ids["P001"]),  # nothing yesterday
    )
    s001, t001, s002, w001a, w001b, unknown, p001 = results
    # One batch: one read of the six persons, then W001's second check-in in a round of its own.
    assert reads[-2:] == [6, 1]
    assert s001.outcome is Outcome.RECORDED and not s001.replaced
    assert s001.standing is not None and s001.standing.status is Status.GREEN
    assert t001.standing is not None and t001.standing.status is Status.YELLOW
    assert s002.replaced and s002.standing is not None and s002.standing.status is Status.RED
    assert not w001a.replaced and w001b.replaced
    assert w001b.standing is not None and w001b.standing.status is Status.YELLOW
    assert unknown.outcome is Outcome.UNKNOWN_PERSON
    assert p001.outcome is Outcome.NOTHING_YESTERDAY
    rows = (
        await c.query(
            select(HealthReport.person_id, HealthReport.temperature, HealthReport.revision)
        )
    ).all()
    by_person = {pid: (t, rev) for pid, t, rev in rows}
    assert by_person == {
        c.ids["S001"]: (365, 1),
        c.ids["T001"]: (382, 1),
        c.ids["S002"]: (365, 2),
        c.ids["W001"]: (379, 2),
    }
    assert [await c.status(no) for no in ("T001", "S002", "W001")] == ["yellow", "red", "yellow"]
    assert await c.status("S001") == "green"
    changes = (await c.query(select(StatusChange.person_id, StatusChange.report_id))).all()
    report_ids = dict((await c.query(select(HealthReport.person_id, HealthReport.id))).all())
    assert sorted(changes) == sorted(
        (c.ids[no], report_ids[c.ids[no]]) for no in ("T001", "S002", "W001")
    )
    kept = (
        (await c.query(select(HealthReportRevision.temperature).order_by(HealthReportRevision.id)))
        .scalars()
        .all()
    )
    assert kept == [365, 365]  # S002's first report, and W001's first of the batch
    warned = {no for no, kind, _ in await c.pushes() if kind == "health_warning"}
    assert warned == {"F001", "F004"}  # T001's and S002's counsellor; W001's responsible


def _count_raw_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The persons read by each batch on the driver's connection (storage/raw.py)."""
    from campus.health import store

    reads: list[int] = []
    load = store.RawCheckin.load_for_checkin

    async def counted(self, tx, person_ids, first, last):  # type: ignore[no-untyped-def]
        reads.append(len(person_ids))
        return await load(self, tx, person_ids, first, last)

    monkeypatch.setattr(store.RawCheckin, "load_for_checkin", counted)
    return reads


async def test_report_only_check_ins_go_on_the_driver_the_others_through_the_session(
    any_db: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In one batch: a first report and a replacement that change nothing else are written
    on the driver's connection; a fever (status change, warning) through the ORM session."""
    import asyncio

    c = any_db
    await report(c, "S002", normal())  # to be replaced in the batch
    c.later(minutes=5)
    raw_reads, session_reads = _count_raw_reads(monkeypatch), _count_batch_reads(monkeypatch)
    checkins = c.kit.checkins
    s001, s002, t001, unknown = await asyncio.gather(
        checkins.submit(c.ids["S001"], normal()),
        checkins.submit(c.ids["S002"], Draft(366, location="city")),
        checkins.submit(c.ids["T001"], fever(382)),
        checkins.submit(999_999, normal()),
    )
    assert raw_reads == [4] and session_reads == [1]  # T001 alone goes on to the session
    assert s001.outcome is Outcome.RECORDED and not s001.replaced
    assert s002.replaced and s002.report is not None and s002.report.location == "city"
    assert s002.standing is not None and s002.standing.status is Status.GREEN
    assert t001.standing is not None and t001.standing.status is Status.YELLOW
    assert unknown.outcome is Outcome.UNKNOWN_PERSON
    rows = (
        await c.query(
            select(
                HealthReport.person_id,
                HealthReport.temperature,
                HealthReport.location,
                HealthReport.revision,
                HealthReport.source,
                HealthReport.submitted_at,
            )
        )
    ).all()
    assert {r[0]: tuple(r[1:]) for r in rows} == {
        c.ids["S001"]: (365, "campus", 1, "form", c.now),
        c.ids["S002"]: (366, "city", 2, "form", c.now),
        c.ids["T001"]: (382, "campus", 1, "form", c.now),
    }
    kept = (
        await c.query(
            select(
                HealthReportRevision.person_id,
                HealthReportRevision.temperature,
                HealthReportRevision.revision,
                HealthReportRevision.replaced_at,
            )
        )
    ).all()
    assert [tuple(k) for k in kept] == [(c.ids["S002"], 365, 1, c.now)]
    assert [await c.status(no) for no in ("S001", "S002", "T001")] == ["green", "green", "yellow"]
    warned = {no for no, kind, _ in await c.pushes() if kind == "health_warning"}
    assert warned == {"F001"}  # T001's counsellor, and nobody for the report-only ones


async def test_a_form_that_leaves_out_where_reads_the_last_report_on_the_driver(
    any_db: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last report is older than the batch's read: it is read on its own, and the
    check-in keeps its place; a first report ever is on campus."""
    import asyncio

    c = any_db
    await report(c, "S001", Draft(366, location="elsewhere", region="武汉"))
    c.later(days=30)  # far behind the rules' lookback; no roll-over ran, nothing was missed
    raw_reads, session_reads = _count_raw_reads(monkeypatch), _count_batch_reads(monkeypatch)
    quick, other = await asyncio.gather(
        c.kit.checkins.submit(c.ids["S001"], Draft(364, source="quick")),
        c.kit.checkins.submit(c.ids["S002"], normal()),
    )
    assert raw_reads == [2] and session_reads == []
    assert quick.report is not None and other.report is not None
    assert (quick.report.location, quick.report.region) == ("elsewhere", "武汉")
    assert other.report.location == "campus"
    count = (await c.query(select(func.count()).select_from(HealthReport))).scalar()
    assert count == 3


async def test_a_failure_after_the_driver_part_fails_only_the_check_ins_left(
    any_db: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report-only check-ins are committed first; when the session part then fails,
    they are not written again (no revision, no "replaced"), the others are retried one by
    one, and a check-in that fails alone fails only its sender."""
    import asyncio

    from campus.health.checkin import CheckinService

    c = any_db
    session_part = CheckinService._record_session
    failures = {"left": 1}

    async def flaky(self: CheckinService, rounds):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the database went away for a moment")
        return await session_part(self, rounds)

    monkeypatch.setattr(CheckinService, "_record_session", flaky)
    checkins = c.kit.checkins
    s001, t001, w001 = await asyncio.gather(
        checkins.submit(c.ids["S001"], normal()),
        checkins.submit(c.ids["T001"], fever(382)),
        checkins.submit(c.ids["W001"], fever(381)),
    )
    assert not s001.replaced and not t001.replaced and not w001.replaced
    assert [await c.status(no) for no in ("S001", "T001", "W001")] == ["green", "yellow", "yellow"]
    failures["left"] = 1
    s002, p001 = await asyncio.gather(
        checkins.submit(c.ids["S002"], normal()),
        checkins.submit(c.ids["P001"], fever(383)),
        return_exceptions=True,
    )
    assert not isinstance(s002, BaseException) and not s002.replaced
    assert isinstance(p001, RuntimeError)  # its sender is told; S002's report stands
    async with c.sessions() as session:
        rows = (await session.execute(select(HealthReport.person_id, HealthReport.revision))).all()
        kept = await session.scalar(select(func.count()).select_from(HealthReportRevision))
    assert sorted(rows) == sorted((c.ids[no], 1) for no in ("S001", "T001", "W001", "S002"))
    assert kept == 0


async def test_replacements_in_one_batch_each_keep_their_own_time(any_db: Campus) -> None:
    """Two persons replace their report in the same batch, a minute apart: each kept
    revision says when its own report was replaced."""
    import asyncio

    c = any_db
    await report(c, "S001", normal())
    await report(c, "S002", normal())
    c.later(minutes=5)
    checkins = c.kit.checkins
    first = asyncio.ensure_future(checkins.submit(c.ids["S001"], normal(contact=True)))
    await asyncio.sleep(0)  # asked (and timed) now; the batch starts a loop turn later
    asked_first = c.now
    c.later(minutes=1)
    second = asyncio.ensure_future(checkins.submit(c.ids["S002"], normal(contact=True)))
    await asyncio.gather(first, second)
    kept = dict(
        (
            await c.query(select(HealthReportRevision.person_id, HealthReportRevision.replaced_at))
        ).all()
    )
    assert kept == {c.ids["S001"]: asked_first, c.ids["S002"]: c.now}


async def test_a_batch_across_campus_midnight_files_each_check_in_under_its_own_day(
    any_db: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked a second before and a second after midnight, decided in one batch: each is filed
    under its own day, and "same as yesterday" reads the report written just before."""
    import asyncio

    c = any_db
    reads = _count_batch_reads(monkeypatch)
    day = c.now.date()
    tomorrow = day + timedelta(days=1)
    await report(c, "S002", fever(375))
    c.at(datetime.combine(tomorrow, datetime.min.time(), SHANGHAI) - timedelta(seconds=1))
    checkins = c.kit.checkins
    late = asyncio.ensure_future(checkins.submit(c.ids["S001"], fever(376)))
    await asyncio.sleep(0)  # asked now; the batch starts a loop turn later
    c.later(seconds=2)
    results = await asyncio.gather(
        late,
        checkins.same_as_yesterday(c.ids["S001"]),
        checkins.same_as_yesterday(c.ids["S002"]),
    )
    assert reads[-2:] == [2, 1]  # one batch: both persons, then S001's second in a round
    assert [r.outcome for r in results] == [Outcome.RECORDED] * 3
    assert [(r.report.day, r.report.temperature) for r in results if r.report] == [
        (day, 376),
        (tomorrow, 376),
        (tomorrow, 375),
    ]
    rows = (
        await c.query(select(HealthReport.person_id, HealthReport.day, HealthReport.temperature))
    ).all()
    assert sorted(rows) == sorted(
        [
            (c.ids["S001"], day, 376),
            (c.ids["S001"], tomorrow, 376),
            (c.ids["S002"], day, 375),
            (c.ids["S002"], tomorrow, 375),
        ]
    )
