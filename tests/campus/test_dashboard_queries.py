"""The dashboard's figures against a small campus whose every number is known (SQLite and
PostgreSQL); the seed is shared with the page tests (tests/bot, tests/e2e)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from campus.dashboard.figures import DIRECT, Dashboard, UnitFigures
from campus.dashboard.service import DashboardService
from campus.links import LinkSigner
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import (
    AccessRecord,
    HealthReport,
    HealthWarning,
    Person,
    Place,
    Unit,
    UnitResponsible,
)
from storage.models_meals import MealItem, MealOrder
from storage.models_returns import ReturnApplication, ReturnBatch
from tests.support import DATA_KEY, resident_id

SHANGHAI = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 3, 16)
NOW = datetime(2026, 3, 16, 15, 30, tzinfo=SHANGHAI)

# (code, name, parent, responsible person numbers)
UNITS = [
    ("UNIV", "示范大学", None, ["A001"]),
    ("CS", "计算机学院", "UNIV", ["F002"]),
    ("CS-2101", "计算机2101班", "CS", ["F001"]),
    ("CS-2102", "计算机2102班", "CS", []),
    ("MED", "医学院", "UNIV", []),
    ("MED-2101", "临床2101班", "MED", []),
]
# Students per class: (person_no, name, status, back on campus, reported today)
STUDENTS = {
    "CS-2101": [
        (
            f"S{i:02d}",
            f"学生{i:02d}号",
            "yellow" if i == 9 else "red" if i == 10 else "green",
            i <= 6,
            i <= 7,
        )
        for i in range(1, 11)
    ],
    "CS-2102": [(f"T{i:02d}", f"陈同学{i}", "green", False, True) for i in range(1, 6)],
    "MED-2101": [
        (f"M{i:02d}", f"王医学{i}", "yellow" if i == 4 else "green", i == 1, i <= 2)
        for i in range(1, 5)
    ],
}
# Staff directly in the university: (person_no, name, roles)
STAFF = [
    ("A001", "何管理员", "admin"),
    ("H001", "郑医生", "health_officer"),
    ("F002", "刘院长", "responsible"),
    ("F001", "陈老师", "responsible"),
    ("R009", "赵主任", "responsible"),  # responsible for no unit
    ("N001", "孙职员", ""),
]


def reported(index: int, days_ago: int) -> bool:
    """Whether the student at `index` (0-based over all students) reported `days_ago` days ago
    (for days_ago ≥ 1; today is given per student in STUDENTS)."""
    return (index + days_ago) % (3 + days_ago % 4) != 0


@dataclass
class Seeded:
    ids: dict[str, int]
    units: dict[str, int]
    places: dict[str, int]


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


async def seed_dashboard(
    sessions: async_sessionmaker[AsyncSession], extra_per_class: int = 0
) -> Seeded:
    """The campus above; `extra_per_class` adds that many more (green, reporting) students to
    each class, for a fuller picture in screenshots (the known figures then change)."""
    vault = DataVault.from_setting(DATA_KEY)
    ids: dict[str, int] = {}
    units: dict[str, int] = {}
    places: dict[str, int] = {}
    counter = 0
    places_pending: dict[int, list[tuple[int, datetime]]] = {}

    def person(no: str, name: str, unit: str, **values: object) -> Person:
        nonlocal counter
        counter += 1
        rid = resident_id(f"110105200001{counter:05d}")
        return Person(
            person_no=no,
            name=name,
            category=str(values.pop("category", "student")),
            unit_id=units[unit],
            id_hash=vault.lookup_hash(rid, "id"),
            id_cipher=vault.encrypt(rid),
            **values,
        )

    async with sessions.begin() as s:
        for code, name, parent, _resp in UNITS:
            node = Unit(code=code, name=name, parent_id=units[parent] if parent else None)
            s.add(node)
            await s.flush()
            units[code] = node.id
        for code, _name, _parent, responsibles in UNITS:
            for no in responsibles:
                s.add(UnitResponsible(unit_id=units[code], person_no=no))
        for no, name, roles in STAFF:
            p = person(no, name, "UNIV", category="staff", roles=roles)
            s.add(p)
            await s.flush()
            ids[no] = p.id
        index = 0
        for unit, students in STUDENTS.items():
            rows = list(students) + [
                (f"{unit}-X{i:03d}", f"李同学{unit}{i}", "green", True, True)
                for i in range(extra_per_class)
            ]
            for no, name, status, back, today in rows:
                p = person(
                    no,
                    name,
                    unit,
                    status=status,
                    returned_at=_at(TODAY - timedelta(days=3), 10) if back else None,
                )
                s.add(p)
                await s.flush()
                ids[no] = p.id
                if today:
                    s.add(_report(p.id, TODAY))
                for days_ago in range(1, 14):
                    if reported(index, days_ago):
                        s.add(_report(p.id, TODAY - timedelta(days=days_ago)))
                s.add(_report(p.id, TODAY - timedelta(days=20)))  # outside the window
                if no.startswith(f"{unit}-X"):  # a busier morning at the gates
                    gate = places_pending.setdefault(index % 2, [])
                    gate.append((p.id, _at(TODAY, 7 + index % 11, index % 60)))
                index += 1
        # Someone who left: neither counted nor their report.
        gone = person("T06", "离校生", "CS-2102", state="inactive")
        s.add(gone)
        await s.flush()
        s.add(_report(gone.id, TODAY))

        def warning(no: str, days_ago: int, cause: str, status: str, **values: object) -> None:
            day = TODAY - timedelta(days=days_ago)
            s.add(
                HealthWarning(
                    person_id=ids[no],
                    day=day,
                    cause=cause,
                    status=status,
                    created_at=_at(day, 9),
                    **values,
                )
            )

        warning("S09", 0, "fever", "yellow")
        warning("S10", 1, "fever_with_symptom", "red", level=1)
        warning("S08", 20, "missed_reports", "green")  # old but still open
        warning("M04", 3, "travel", "yellow", acked_at=_at(TODAY, 8), acked_by_id=ids["F001"])
        warning("T01", 20, "fever", "yellow", acked_at=_at(TODAY, 8))  # acknowledged long ago

        for code, name, kind in [
            ("GATE-N", "北门", "gate"),
            ("GATE-S", "南门", "gate"),
            ("DORM-1", "1号楼", "dorm"),
            ("CANTEEN-1", "第一食堂", "canteen"),
        ]:
            place = Place(code=code, name=name, kind=kind)
            s.add(place)
            await s.flush()
            places[code] = place.id

        def access(
            no: str | None, gate: str, at: datetime, *, out: bool = False, allowed: bool = True
        ) -> None:
            s.add(
                AccessRecord(
                    person_id=ids[no] if no else None,
                    place_id=places[gate],
                    direction="out" if out else "in",
                    at=at,
                    allowed=allowed,
                    reason="" if allowed else "status",
                    method="guard",
                )
            )

        access("S01", "GATE-N", _at(TODAY, 8, 10))
        access("S02", "GATE-N", _at(TODAY, 8, 40))
        access("M01", "GATE-N", _at(TODAY, 9, 5))
        access("S03", "GATE-N", _at(TODAY, 12), out=True)
        access("S09", "GATE-N", _at(TODAY, 8, 15), allowed=False)
        access("T01", "GATE-S", _at(TODAY, 18, 30))
        access(None, "GATE-S", _at(TODAY, 7), allowed=False)
        access("S01", "DORM-1", _at(TODAY, 22))
        access("S04", "GATE-N", _at(TODAY - timedelta(days=1), 8))
        for side, entries in places_pending.items():
            for person_id, at in entries:
                s.add(
                    AccessRecord(
                        person_id=person_id,
                        place_id=places["GATE-N" if side == 0 else "GATE-S"],
                        direction="in",
                        at=at,
                        allowed=True,
                        method="guard",
                    )
                )

        batch = ReturnBatch(
            code="B1",
            name="毕业生第一批",
            kind="graduate",
            arrive_from=TODAY - timedelta(days=2),
            arrive_to=TODAY + timedelta(days=5),
            daily_quota=10,
        )
        s.add(batch)
        await s.flush()

        def application(no: str, state: str, arrive_on: date, arrived: bool = False) -> None:
            s.add(
                ReturnApplication(
                    person_id=ids[no],
                    batch_id=batch.id,
                    arrive_on=arrive_on,
                    transport="train",
                    region="湖北省武汉市",
                    state=state,
                    live=1 if state in ("pending", "approved") else None,
                    step_since=_at(TODAY - timedelta(days=5), 9),
                    submitted_at=_at(TODAY - timedelta(days=5), 9),
                    updated_at=_at(TODAY - timedelta(days=5), 9),
                    arrived_at=_at(arrive_on, 10) if arrived else None,
                    arrived_on=arrive_on if arrived else None,
                )
            )

        application("S01", "arrived", TODAY - timedelta(days=1), arrived=True)
        application("S02", "arrived", TODAY, arrived=True)
        application("S03", "approved", TODAY)
        application("M01", "pending", TODAY + timedelta(days=1))
        application("T01", "rejected", TODAY + timedelta(days=1))

        lunch = MealItem(
            canteen_id=places["CANTEEN-1"],
            day=TODAY,
            slot="lunch",
            item_code="L1",
            name="红烧肉套餐",
            price_cents=1500,
            capacity=100,
            ordered=3,
        )
        dinner = MealItem(
            canteen_id=places["CANTEEN-1"],
            day=TODAY,
            slot="dinner",
            item_code="D1",
            name="番茄鸡蛋面",
            price_cents=1200,
            capacity=50,
        )
        s.add_all([lunch, dinner])
        await s.flush()
        for no, quantity, state in [
            ("S01", 2, "placed"),
            ("S02", 1, "placed"),
            ("S03", 1, "cancelled"),
        ]:
            s.add(
                MealOrder(
                    person_id=ids[no],
                    item_id=lunch.id,
                    quantity=quantity,
                    price_cents=1500,
                    state=state,
                )
            )
    return Seeded(ids, units, places)


def _report(person_id: int, day: date) -> HealthReport:
    return HealthReport(person_id=person_id, day=day, temperature=365, submitted_at=_at(day, 8))


@dataclass
class Env:
    sessions: async_sessionmaker[AsyncSession]
    service: DashboardService
    seeded: Seeded


@pytest.fixture(params=["sqlite", "postgres"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/dash.db"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    seeded = await seed_dashboard(sessions)
    clock = FrozenClock(NOW.timestamp())
    service = DashboardService(
        sessions, LinkSigner(DATA_KEY), clock, SHANGHAI, "https://hc.example"
    )
    try:
        yield Env(sessions, service, seeded)
    finally:
        await engine.dispose()


def expected_daily(classes: list[str]) -> list[int]:
    """Reports per day (oldest first) of the students of `classes`, from the seed's rules."""
    counts = [0] * 14
    index = 0
    for unit, students in STUDENTS.items():
        for _no, _name, _status, _back, today in students:
            if unit in classes:
                counts[13] += int(today)
                for days_ago in range(1, 14):
                    counts[13 - days_ago] += int(reported(index, days_ago))
            index += 1
    return counts


def rows(d: Dashboard) -> dict[str, UnitFigures]:
    return {("(direct)" if r.key == DIRECT else r.code): r for r in d.rows}


async def test_the_whole_university(env: Env) -> None:
    d = await env.service.overview()
    f = d.focus
    assert (f.code, d.today, d.everything) == ("UNIV", TODAY, True)
    assert f.persons == 19 + len(STAFF)  # the inactive T06 does not count
    assert f.reported_today == 7 + 5 + 2  # T06's report does not count either
    assert f.rate() == pytest.approx(14 / 25)
    assert f.status == {"green": 22, "yellow": 2, "red": 1}
    assert (f.open_warnings, f.acked_warnings) == (3, 1)
    assert f.returned == 6 + 1
    assert f.daily == expected_daily(["CS-2101", "CS-2102", "MED-2101"])
    assert [d.days[0], d.days[-1]] == [TODAY - timedelta(days=13), TODAY]

    by = rows(d)
    assert list(by) == ["(direct)", "CS", "MED"]
    cs, med, direct = by["CS"], by["MED"], by["(direct)"]
    assert (cs.persons, cs.reported_today, cs.drillable) == (15, 12, True)
    assert cs.status == {"green": 13, "yellow": 1, "red": 1}
    assert (cs.open_warnings, cs.acked_warnings) == (3, 0)
    assert (med.persons, med.reported_today, med.returned) == (4, 2, 1)
    assert (med.open_warnings, med.acked_warnings) == (0, 1)
    assert (direct.persons, direct.reported_today) == (6, 0)

    # The open warnings, newest first, with masked names only.
    assert [(w.masked_name, w.cause, w.status) for w in d.warnings] == [
        ("学***号", "fever", "yellow"),
        ("学***号", "fever_with_symptom", "red"),
        ("学***号", "missed_reports", "green"),
    ]
    assert all("学生" not in w.masked_name for w in d.warnings)

    gates = {g.code: g for g in d.gates}
    assert list(gates) == ["GATE-N", "GATE-S"]  # gates only, the dorm door is not one
    assert (gates["GATE-N"].hours[8], gates["GATE-N"].hours[9], sum(gates["GATE-N"].hours)) == (
        2,
        1,
        3,
    )
    assert (gates["GATE-N"].refused, gates["GATE-S"].refused) == (1, 1)
    assert (gates["GATE-S"].hours[18], sum(gates["GATE-S"].hours)) == (1, 1)

    (batch,) = d.batches
    assert (batch.code, batch.applied, batch.pending, batch.approved, batch.arrived) == (
        "B1",
        5,
        1,
        3,
        2,
    )
    assert (batch.arrived_today, batch.expected_today) == (1, 1)
    assert dict(batch.arrivals_by_day) == {TODAY - timedelta(days=1): 1, TODAY: 1}

    meals = {m.slot: m for m in d.meals}
    assert (meals["lunch"].ordered, meals["lunch"].capacity, meals["lunch"].orders) == (3, 100, 2)
    assert (meals["dinner"].ordered, meals["dinner"].capacity) == (0, 50)


async def test_drilling_down_to_a_college_and_a_class(env: Env) -> None:
    d = await env.service.overview("CS")
    assert d.path == [("UNIV", "示范大学"), ("CS", "计算机学院")]
    assert d.focus.persons == 15
    assert d.focus.daily == expected_daily(["CS-2101", "CS-2102"])
    by = rows(d)
    assert list(by) == ["CS-2101", "CS-2102"]  # nobody directly in the college: no such row
    assert by["CS-2101"].rate() == pytest.approx(0.7)
    assert by["CS-2102"].rate() == pytest.approx(1.0)
    assert not by["CS-2101"].drillable
    # Gate entries of the college's people only; refusals of its people only.
    gates = {g.code: g for g in d.gates}
    assert (sum(gates["GATE-N"].hours), gates["GATE-N"].refused) == (2, 1)
    assert (sum(gates["GATE-S"].hours), gates["GATE-S"].refused) == (1, 0)  # T01, no stranger
    (batch,) = d.batches
    assert (batch.applied, batch.arrived) == (4, 2)  # M01 is not of the college

    d = await env.service.overview("CS-2101")
    assert d.path[-1] == ("CS-2101", "计算机2101班")
    assert (d.focus.persons, d.focus.reported_today, d.focus.open_warnings) == (10, 7, 3)
    (own,) = d.rows
    assert own.key == DIRECT and own.persons == 10


def test_healthbot_stats_prints_the_headline_figures(tmp_path: Path) -> None:
    import asyncio

    from click.testing import CliRunner

    from bot.cli import main

    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def prepare() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await seed_dashboard(session_factory(engine))
        await engine.dispose()

    asyncio.run(prepare())
    env = {"HEALTHBOT_DATABASE_URL": url, "HEALTHBOT_DATA_KEY": DATA_KEY}
    runner = CliRunner()
    # The terminal's today is the real one, so only figures that do not depend on it.
    result = runner.invoke(main, ["stats"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("示范大学 — ")
    assert "status             green 22, yellow 2, red 1" in result.output
    assert "open warnings      3" in result.output
    assert "back on campus     7/25" in result.output
    assert "计算机学院" in result.output and "医学院" in result.output
    result = runner.invoke(main, ["stats", "--unit", "CS"], env=env)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("示范大学 › 计算机学院 — ")
    assert "计算机2101班" in result.output and "医学院" not in result.output
    result = runner.invoke(main, ["stats", "--unit", "NOPE"], env=env)
    assert result.exit_code != 0 and "unknown unit 'NOPE'" in result.output
    # The other tables stay where they were.
    assert runner.invoke(main, ["stats", "registry"], env=env).exit_code == 0


async def test_finished_days_are_read_once_and_today_is_live(env: Env) -> None:
    """A finished day never changes (a report is for the day it is sent): it is read once per
    process; today's reports show at the next view."""
    before = await env.service.overview("CS-2101")
    async with env.sessions.begin() as s:
        yesterday = TODAY - timedelta(days=1)
        report = (
            await s.execute(select(HealthReport).where(HealthReport.day == yesterday).limit(1))
        ).scalar_one()
        await s.delete(report)  # no feature does this; it shows what is cached
        s.add(_report(env.seeded.ids["S08"], TODAY))
    after = await env.service.overview("CS-2101")
    assert after.focus.daily[:13] == before.focus.daily[:13]
    assert after.focus.reported_today == before.focus.reported_today + 1


def test_a_day_is_final_ten_minutes_after_midnight() -> None:
    from campus.dashboard.history import DailyReports

    at = datetime(2026, 3, 16, 0, 5, tzinfo=SHANGHAI)
    assert DailyReports.last_settled(TODAY, at, SHANGHAI) == TODAY - timedelta(days=2)
    at = datetime(2026, 3, 16, 0, 10, tzinfo=SHANGHAI)
    assert DailyReports.last_settled(TODAY, at, SHANGHAI) == TODAY - timedelta(days=1)
