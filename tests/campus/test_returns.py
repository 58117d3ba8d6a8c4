"""Return to campus (issue 8) against a real database: eligibility, quota, the approval chain,
escalation, withdrawal, arrival at the gate and the progress figures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from campus.access.duty import IN
from campus.access.gate import AccessService
from campus.access.keys import KeyRing
from campus.access.passes import IssuedPass, PassService
from campus.access.places import PlaceDirectory
from campus.access.policies import DEFAULTS, Reason, parse_policies
from campus.notifications import Notifications
from campus.registry.importer import import_rows
from campus.returns.applications import Form, Outcome, ReturnService
from campus.returns.approvals import Decision, Words
from campus.returns.arrival import ArrivalDesk
from campus.returns.config import AutoApprove, ReturnRules, parse_returns
from campus.returns.eligibility import Problem
from campus.returns.stats import batch_progress, render
from campus.rules import RulesError
from campus.secrets import DataVault
from storage import raw
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import (
    AuditEntry,
    HealthReport,
    OutboxMessage,
    Person,
    Place,
    Unit,
    UnitResponsible,
)
from storage.models_returns import ReturnApplication, ReturnDayCount
from tests.support import DATA_KEY, resident_id

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
TODAY = NOON.astimezone(TZ).date()
WORDS = Words(lambda loc: "同意" if loc == "zh_CN" else "approve", lambda loc: "驳回")


@dataclass
class World:
    url: str
    sessions: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    returns: ReturnService
    access: AccessService
    passes: PassService
    ids: dict[str, int]

    def form(
        self, day: date | None = None, batch: str = "G1", region: str = "湖北省武汉市"
    ) -> Form:
        return Form(batch, day or TODAY + timedelta(days=2), "train", "G1234", region)

    async def app(self, person_no: str) -> ReturnApplication:
        async with self.sessions() as s:
            return (
                await s.execute(
                    select(ReturnApplication)
                    .where(ReturnApplication.person_id == self.ids[person_no])
                    .order_by(ReturnApplication.id.desc())
                    .limit(1)
                )
            ).scalar_one()

    async def pushes(self, person_no: str, kind: str | None = None) -> list[str]:
        async with self.sessions() as s:
            stmt = select(OutboxMessage).where(OutboxMessage.person_id == self.ids[person_no])
            if kind:
                stmt = stmt.where(OutboxMessage.kind == kind)
            rows = (await s.execute(stmt.order_by(OutboxMessage.id))).scalars()
            return [r.payload["text"] for r in rows]

    async def token(self, person_no: str) -> str:
        holder = await self.passes.holder(self.ids[person_no])
        assert holder is not None
        issued = await self.passes.issue(holder, TODAY)
        assert isinstance(issued, IssuedPass)
        return issued.token

    async def scan(self, person_no: str, place: str = "GATE-N") -> Any:
        info = await self.access.places.by_code(place)
        assert info is not None
        return await self.access.scan(await self.token(person_no), info, self.ids["G001"], IN)

    def with_rules(self, rules: ReturnRules) -> ReturnService:
        return ReturnService(
            self.sessions, Notifications(self.sessions), rules, self.clock, TZ, WORDS
        )


PEOPLE = [
    # person_no, name, category, unit, roles, locale
    ("S001", "张三", "student", "CLS", "", "zh_CN"),
    ("S002", "李四", "student", "CLS", "", "zh_CN"),
    ("S003", "王五", "student", "CLS", "", "zh_CN"),
    ("S004", "Emma Wilson", "student", "CLS", "", "en"),
    ("S900", "赵六", "student", "OTHER", "", "zh_CN"),
    ("C001", "陈老师", "faculty", "CLS", "responsible", "zh_CN"),
    ("D001", "刘院长", "faculty", "COL", "responsible", "zh_CN"),
    ("U001", "何校长", "staff", "UNI", "responsible", "en"),
    ("G001", "马保安", "staff", "UNI", "guard", "zh_CN"),
    ("T001", "Jane Smith", "staff", "COL", "", "en"),
]


async def seed(sessions: async_sessionmaker[AsyncSession], vault: DataVault) -> dict[str, int]:
    async with sessions.begin() as s:
        uni = Unit(code="UNI", name="University")
        s.add(uni)
        await s.flush()
        col = Unit(code="COL", name="College", parent_id=uni.id)
        other = Unit(code="OTHER", name="Other College", parent_id=uni.id)
        s.add_all([col, other])
        await s.flush()
        cls = Unit(code="CLS", name="Class 1", parent_id=col.id)
        s.add(cls)
        await s.flush()
        units = {"UNI": uni.id, "COL": col.id, "OTHER": other.id, "CLS": cls.id}
        s.add_all(
            [
                UnitResponsible(unit_id=cls.id, person_no="C001"),
                UnitResponsible(unit_id=col.id, person_no="D001"),
                UnitResponsible(unit_id=uni.id, person_no="U001"),
            ]
        )
        ids = {}
        for i, (no, name, category, unit, roles, locale) in enumerate(PEOPLE):
            number = resident_id(f"1101052000010{i:03d}1")
            person = Person(
                person_no=no,
                name=name,
                category=category,
                unit_id=units[unit],
                roles=roles,
                id_hash=vault.lookup_hash(number, "id"),
                id_cipher=vault.encrypt(number),
                locale=locale,
            )
            s.add(person)
            await s.flush()
            ids[no] = person.id
        campus = Place(code="CAMPUS", name="Campus", kind="campus", policy="green_only")
        s.add(campus)
        await s.flush()
        s.add_all(
            [
                Place(
                    code="GATE-N",
                    name="北门",
                    kind="gate",
                    policy="green_only",
                    parent_id=campus.id,
                ),
                Place(
                    code="LIB",
                    name="Library",
                    kind="library",
                    policy="returned_only",
                    parent_id=campus.id,
                ),
            ]
        )
        # Two weeks of check-ins for S001, S002, S004, S900; S003 has five.
        for no, days in (("S001", 14), ("S002", 20), ("S003", 5), ("S004", 14), ("S900", 14)):
            for back in range(1, days + 1):
                s.add(
                    HealthReport(
                        person_id=ids[no],
                        day=TODAY - timedelta(days=back),
                        temperature=365,
                        submitted_at=NOON - timedelta(days=back),
                    )
                )
    report = await import_rows(
        sessions,
        vault,
        "batches",
        [
            (
                2,
                {
                    "code": "G1",
                    "name": "Graduates",
                    "kind": "graduate",
                    "unit_codes": "COL",
                    "arrive_from": str(TODAY - timedelta(days=1)),
                    "arrive_to": str(TODAY + timedelta(days=6)),
                    "daily_quota": "2",
                },
            )
        ],
    )
    assert report.ok, report.errors
    return ids


@pytest.fixture(params=["sqlite", "postgresql"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/returns.db"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    vault = DataVault.from_setting(DATA_KEY)
    ids = await seed(sessions, vault)
    clock = FrozenClock(NOON.timestamp())
    notifications = Notifications(sessions)
    rules = parse_returns({})
    returns = ReturnService(sessions, notifications, rules, clock, TZ, WORDS)
    keys = KeyRing(
        sessions,
        vault,
        campus="wxtest",
        max_validity=600,
        monotonic=clock.monotonic,
        wall=clock.time,
    )
    passes = PassService(sessions, keys, clock, validity=600)
    access = AccessService(
        sessions,
        passes,
        parse_policies(DEFAULTS, "test"),
        PlaceDirectory(sessions, clock.monotonic),
        clock,
        TZ,
    )
    access.gate_hook = ArrivalDesk(notifications, rules, TZ)
    try:
        yield World(url, sessions, clock, returns, access, passes, ids)
    finally:
        await access.close()
        await engine.dispose()


# -- eligibility ------------------------------------------------------------------------------


async def test_eligibility_matrix(world: World) -> None:
    r = world.returns
    ok = await r.eligibility(world.ids["S001"])
    assert (
        ok is not None
        and ok.ok
        and ok.checkin_days == 14
        and [b.code for b in ok.batches] == ["G1"]
    )
    few = await r.eligibility(world.ids["S003"])
    assert few is not None and few.problems == (Problem.CHECKINS,)
    assert few.checkin_days == 5 and few.days_missing == 9
    elsewhere = await r.eligibility(world.ids["S900"])  # a unit the batch does not name
    assert elsewhere is not None and elsewhere.problems == (Problem.NO_BATCH,)
    staff = await r.eligibility(world.ids["T001"])
    assert staff is not None and Problem.NOT_STUDENT in staff.problems
    async with world.sessions.begin() as s:
        await s.execute(update(Person).where(Person.person_no == "S002").values(status="yellow"))
        await s.execute(update(Person).where(Person.person_no == "S004").values(returned_at=NOON))
    yellow = await r.eligibility(world.ids["S002"])
    assert yellow is not None and yellow.problems == (Problem.STATUS,)
    back = await r.eligibility(world.ids["S004"])
    assert back is not None and back.problems == (Problem.RETURNED,)
    # Today's report not in yet: the streak ending yesterday counts; a gap breaks it.
    async with world.sessions.begin() as s:
        await s.execute(
            delete(HealthReport).where(
                HealthReport.person_id == world.ids["S001"],
                HealthReport.day == TODAY - timedelta(days=3),
            )
        )
    gap = await r.eligibility(world.ids["S001"])
    assert gap is not None and gap.checkin_days == 2 and Problem.CHECKINS in gap.problems
    # An ineligible submission writes nothing.
    result = await r.submit(world.ids["S003"], world.form())
    assert result.outcome is Outcome.INELIGIBLE
    async with world.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ReturnApplication)) == 0


async def test_a_batch_window_and_bad_dates(world: World) -> None:
    r = world.returns
    before = await r.submit(world.ids["S001"], world.form(TODAY - timedelta(days=1)))
    assert before.outcome is Outcome.BAD_DATE  # in the window, but already past
    after = await r.submit(world.ids["S001"], world.form(TODAY + timedelta(days=7)))
    assert after.outcome is Outcome.BAD_DATE
    other = await r.submit(world.ids["S001"], world.form(batch="NOPE"))
    assert other.outcome is Outcome.NO_BATCH


# -- quota ------------------------------------------------------------------------------------


async def test_a_full_day_is_not_offered_and_cannot_be_taken(world: World) -> None:
    r = world.returns
    day = TODAY + timedelta(days=2)
    for no in ("S001", "S002"):
        assert (await r.submit(world.ids[no], world.form(day))).outcome is Outcome.SUBMITTED
    batch = await r.batch(world.ids["S004"], "g1")
    assert batch is not None
    offered = dict(await r.days(batch))
    assert day not in offered and offered[TODAY] == 2 and offered[TODAY + timedelta(days=6)] == 2
    assert (await r.submit(world.ids["S004"], world.form(day))).outcome is Outcome.FULL
    # Withdrawing gives the place back.
    assert (await r.withdraw(world.ids["S001"])).outcome is Outcome.WITHDRAWN
    assert dict(await r.days(batch))[day] == 1
    assert (await r.submit(world.ids["S004"], world.form(day))).outcome is Outcome.SUBMITTED


async def test_students_racing_for_the_last_place_on_postgresql(
    postgres_url: str,
) -> None:
    """Many students submit at once for a day with two places: exactly two get one."""
    engine = create_engine(postgres_url)
    await upgrade(engine)
    sessions = session_factory(engine)
    vault = DataVault.from_setting(DATA_KEY)
    ids = await seed(sessions, vault)
    # More students of the class, all eligible.
    async with sessions.begin() as s:
        cls = await s.scalar(select(Unit.id).where(Unit.code == "CLS"))
        assert cls is not None
        for i in range(8):
            number = resident_id(f"4201022001010{i:03d}1")
            person = Person(
                person_no=f"R{i:03d}",
                name=f"学生{i}",
                category="student",
                unit_id=cls,
                id_hash=vault.lookup_hash(number, "id"),
                id_cipher=vault.encrypt(number),
            )
            s.add(person)
            await s.flush()
            ids[person.person_no] = person.id
            for back in range(1, 15):
                s.add(
                    HealthReport(
                        person_id=person.id,
                        day=TODAY - timedelta(days=back),
                        temperature=365,
                        submitted_at=NOON - timedelta(days=back),
                    )
                )
    clock = FrozenClock(NOON.timestamp())
    returns = ReturnService(sessions, Notifications(sessions), parse_returns({}), clock, TZ, WORDS)
    day = TODAY + timedelta(days=3)
    racers = [ids[f"R{i:03d}"] for i in range(8)] + [ids["S001"], ids["S002"]]
    try:
        results = await asyncio.gather(
            *(returns.submit(pid, Form("G1", day, "flight", "CA1234", "北京")) for pid in racers)
        )
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Outcome.SUBMITTED) == 2
        assert outcomes.count(Outcome.FULL) == 8
        async with sessions() as s:
            taken = await s.scalar(select(ReturnDayCount.taken).where(ReturnDayCount.day == day))
            apps = await s.scalar(
                select(func.count())
                .select_from(ReturnApplication)
                .where(ReturnApplication.arrive_on == day)
            )
        assert taken == 2 and apps == 2
    finally:
        await engine.dispose()


# -- the approval chain -----------------------------------------------------------------------


async def test_the_chain_class_then_college_then_arrival(world: World) -> None:
    r = world.returns
    result = await r.submit(world.ids["S001"], world.form(TODAY + timedelta(days=1)))
    assert result.outcome is Outcome.SUBMITTED and result.application_id is not None
    app_id = result.application_id
    (ask,) = await world.pushes("C001", "return_approval")
    assert f"A{app_id}" in ask and "张*" in ask and "张三" not in ask and "G1234" in ask
    assert f"msgmenucontent=同意 A{app_id}" in ask and "第 1/2 步" in ask
    assert await world.pushes("D001", "return_approval") == []
    assert (await r.pending(world.ids["C001"]))[1] == 1
    # The college cannot decide the class's step.
    assert await r.decide(world.ids["D001"], app_id, True) is Decision.NOT_ALLOWED
    assert await r.decide(world.ids["C001"], app_id, True) is Decision.PASSED_ON
    assert (await r.pending(world.ids["C001"]))[1] == 0
    (college,) = await world.pushes("D001", "return_approval")
    assert "第 2/2 步" in college
    told = await world.pushes("S001", "return_progress")
    assert any("已通过第 1 步" in t for t in told)
    # Deciding the passed step again changes nothing.
    assert await r.decide(world.ids["C001"], app_id, True) is Decision.NOT_ALLOWED
    assert await r.decide(world.ids["D001"], app_id, True) is Decision.APPROVED
    assert (await world.app("S001")).state == "approved"
    (approved,) = await world.pushes("S001", "return_decided")
    assert "已通过" in approved and str(TODAY + timedelta(days=1)) in approved
    # Approved students can no longer change it.
    assert (await r.change(world.ids["S001"], world.form())).outcome is Outcome.NOT_PENDING

    # Arrival today is within one day of tomorrow: recorded, returned_at set, both told.
    decision = await world.scan("S001")
    assert decision.allowed and decision.note is not None and decision.note.arrived
    app = await world.app("S001")
    assert app.state == "arrived" and app.arrived_on == TODAY and app.live is None
    async with world.sessions() as s:
        person = await s.get(Person, world.ids["S001"])
        assert person is not None and person.returned_at is not None
    assert any("欢迎返校" in t for t in await world.pushes("S001", "return_arrived"))
    (counsellor,) = await world.pushes("C001", "return_arrived")
    assert "张*" in counsellor and "S001" in counsellor and "北门" in counsellor
    # The returned_only library now admits the student; the next gate scan is a plain pass.
    assert (await world.scan("S001", "LIB")).allowed
    again = await world.scan("S001")
    assert again.allowed and again.note is None
    async with world.sessions() as s:
        actions = set((await s.execute(select(AuditEntry.action))).scalars())
    assert {"apply", "approve", "arrive"} <= actions


async def test_rejection_tells_the_student_why_and_frees_the_place(world: World) -> None:
    r = world.returns
    day = TODAY + timedelta(days=2)
    app_id = (await r.submit(world.ids["S002"], world.form(day))).application_id
    assert app_id is not None
    assert await r.decide(world.ids["C001"], app_id, True) is Decision.PASSED_ON
    assert (
        await r.decide(world.ids["D001"], app_id, False, "行程需补充核酸证明") is Decision.REJECTED
    )
    app = await world.app("S002")
    assert app.state == "rejected" and app.live is None and app.reason == "行程需补充核酸证明"
    (told,) = await world.pushes("S002", "return_decided")
    assert "未通过" in told and "行程需补充核酸证明" in told
    async with world.sessions() as s:
        taken = await s.scalar(select(ReturnDayCount.taken).where(ReturnDayCount.day == day))
    assert taken == 0
    # They may apply again.
    assert (await r.submit(world.ids["S002"], world.form(day))).outcome is Outcome.SUBMITTED


async def test_unanswered_steps_are_reminded_then_escalated(world: World) -> None:
    r = world.returns
    app_id = (await r.submit(world.ids["S001"], world.form())).application_id
    assert app_id is not None
    assert await r.remind_and_escalate() == (0, 0)
    world.clock.advance(23 * 3600)
    assert await r.remind_and_escalate() == (0, 0)
    world.clock.advance(3600 + 1)
    assert await r.remind_and_escalate() == (1, 0)
    assert any(t.startswith("提醒") for t in await world.pushes("C001", "return_reminder"))
    assert await r.remind_and_escalate() == (0, 0)  # reminded once
    world.clock.advance(24 * 3600 + 1)
    assert await r.remind_and_escalate() == (0, 1)
    # One unit up from the class: the college's responsible person may now decide step 1.
    (escalated,) = await world.pushes("D001", "return_approval")
    assert escalated.startswith("已上报给你")
    assert (await r.pending(world.ids["D001"]))[1] == 1
    world.clock.advance(24 * 3600 + 1)
    assert await r.remind_and_escalate() == (0, 1)  # then the university
    assert len(await world.pushes("U001", "return_approval")) == 1
    world.clock.advance(24 * 3600 + 1)
    assert await r.remind_and_escalate() == (0, 0)  # at most max_escalations (2)
    assert await r.decide(world.ids["U001"], app_id, True) is Decision.PASSED_ON
    assert (await world.app("S001")).step == 1


async def test_withdraw_and_change_before_approval(world: World) -> None:
    r = world.returns
    first = (
        await r.submit(world.ids["S001"], world.form(TODAY + timedelta(days=1)))
    ).application_id
    assert first is not None
    # A second application while one is open is refused.
    again = await r.submit(world.ids["S001"], world.form())
    assert again.outcome is Outcome.INELIGIBLE and again.eligibility is not None
    assert Problem.OPEN_APPLICATION in again.eligibility.problems
    changed = await r.change(
        world.ids["S001"],
        replace(world.form(TODAY + timedelta(days=4)), transport="car", transport_no="鄂A12345"),
    )
    assert changed.outcome is Outcome.CHANGED and changed.application_id == first
    app = await world.app("S001")
    assert app.arrive_on == TODAY + timedelta(days=4) and app.transport == "car"
    async with world.sessions() as s:
        counts = dict((await s.execute(select(ReturnDayCount.day, ReturnDayCount.taken))).all())
    assert counts[TODAY + timedelta(days=1)] == 0 and counts[TODAY + timedelta(days=4)] == 1
    assert len(await world.pushes("C001", "return_approval")) == 2  # asked again
    assert (await r.withdraw(world.ids["S001"])).outcome is Outcome.WITHDRAWN
    assert (await world.app("S001")).state == "withdrawn"
    assert (await r.withdraw(world.ids["S001"])).outcome is Outcome.NOT_PENDING
    assert await r.decide(world.ids["C001"], first, True) is Decision.NOT_PENDING


async def test_an_approved_student_who_cannot_come_withdraws(world: World) -> None:
    r = world.returns
    day = TODAY + timedelta(days=2)
    app_id = (await r.submit(world.ids["S001"], world.form(day))).application_id
    assert app_id is not None
    await r.decide(world.ids["C001"], app_id, True)
    await r.decide(world.ids["D001"], app_id, True)
    assert (await r.withdraw(world.ids["S001"])).outcome is Outcome.WITHDRAWN
    async with world.sessions() as s:
        taken = await s.scalar(select(ReturnDayCount.taken).where(ReturnDayCount.day == day))
    assert taken == 0
    assert (await world.scan("S001")).note is None  # no open application: the policy decides


async def test_arrival_on_the_wrong_day_is_refused_with_the_reason(world: World) -> None:
    r = world.returns
    app_id = (
        await r.submit(world.ids["S001"], world.form(TODAY + timedelta(days=3)))
    ).application_id
    assert app_id is not None
    pending = await world.scan("S001")
    assert not pending.allowed and pending.reason is Reason.NOT_RETURNED
    assert pending.note is not None and pending.note.problem == "pending"
    await r.decide(world.ids["C001"], app_id, True)
    await r.decide(world.ids["D001"], app_id, True)
    early = await world.scan("S001")  # today; approved for the day after tomorrow +1
    assert not early.allowed and early.note is not None and early.note.problem == "too_early"
    assert early.note.day == TODAY + timedelta(days=3)
    world.clock.advance(5 * 86400)  # two days after the approved day
    late = await world.scan("S001")
    assert not late.allowed and late.note is not None and late.note.problem == "too_late"
    world.clock.advance(-86400)  # one day after: within the tolerance
    ok = await world.scan("S001")
    assert ok.allowed and ok.note is not None and ok.note.arrived
    assert (await world.app("S001")).arrived_on == TODAY + timedelta(days=4)
    # Students without an application are left to the gate's policy.
    assert (await world.scan("S002")).allowed


async def test_a_gate_scan_reads_applications_only_of_persons_with_an_open_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's read of the persons says who has an open application; the desk's own read
    (FOR UPDATE) runs for them only, so a scan of anyone else makes no query of applications.
    The persons are read once, whichever way the batch is then written."""
    engine = world.sessions.kw["bind"]
    gate = await world.access.places.by_code("GATE-N")
    assert gate is not None
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    # Statements on the driver's connection (storage/raw.py) bypass SQLAlchemy's events.
    params = raw.Statement.params

    def traced(stmt: raw.Statement, values: Any) -> tuple[Any, ...]:
        statements.append(stmt.sql)
        return params(stmt, values)

    monkeypatch.setattr(raw.Statement, "params", traced)

    async def scan(person_no: str) -> tuple[Any, list[str]]:
        token = await world.token(person_no)
        statements.clear()
        event.listen(engine.sync_engine, "before_cursor_execute", seen)
        try:
            decision = await world.access.scan(token, gate, world.ids["G001"], IN)
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", seen)
        return decision, [s for s in statements if "return_applications" in s]

    decision, reads = await scan("S002")
    assert decision.allowed and decision.note is None
    assert len(reads) == 1 and "EXISTS" in reads[0] and "FROM persons" in reads[0]
    assert (await world.returns.submit(world.ids["S002"], world.form())).application_id
    decision, reads = await scan("S002")
    assert not decision.allowed and decision.note is not None
    assert decision.note.problem == "pending"
    assert len(reads) == 2 and reads[1].startswith("SELECT return_applications.")
    # Scanned together (one batch, one `IN` read): the desk is asked about S002 alone.
    tokens = [await world.token(no) for no in ("S002", "S003")]
    statements.clear()
    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        both = await asyncio.gather(
            *(world.access.scan(t, gate, world.ids["G001"], IN) for t in tokens)
        )
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "return_applications" in s]
    assert [d.allowed for d in both] == [False, True]
    assert len(reads) == 2 and "EXISTS" in reads[0]
    assert reads[1].startswith("SELECT return_applications.")


async def test_auto_approval_by_rule_is_recorded_as_such(world: World) -> None:
    rules = replace(
        parse_returns({}),
        auto=AutoApprove(enabled=True, min_checkin_days=14, risk_regions=("武汉",)),
    )
    auto = world.with_rules(rules)
    low = await auto.submit(world.ids["S001"], world.form(region="江苏省南京市"))
    assert low.outcome is Outcome.AUTO_APPROVED
    app = await world.app("S001")
    assert app.state == "approved" and app.decided_by == "rule:auto"
    assert any("自动通过" in t for t in await world.pushes("S001", "return_decided"))
    risky = await auto.submit(world.ids["S002"], world.form(region="湖北省武汉市"))
    assert risky.outcome is Outcome.SUBMITTED
    # Pending applications submitted while the rule was off, approved in bulk.
    plain = await world.returns.submit(
        world.ids["S004"], world.form(TODAY + timedelta(days=3), region="Shanghai")
    )
    assert plain.outcome is Outcome.SUBMITTED
    assert await auto.auto_approve() == 1
    assert (await world.app("S004")).decided_by == "rule:auto"
    assert (await world.app("S002")).state == "pending"
    assert await auto.auto_approve() == 0


def test_the_rules_section_is_checked() -> None:
    assert parse_returns({}).min_checkin_days == 14
    with pytest.raises(RulesError, match=r"returns.approval_chain\[0\].up"):
        parse_returns({"returns": {"approval_chain": [{"name": "x", "up": -1}]}})
    with pytest.raises(RulesError, match="unknown keys"):
        parse_returns({"returns": {"min_days": 3}})
    with pytest.raises(RulesError, match=r"auto_approve\.statuses"):
        parse_returns({"returns": {"auto_approve": {"statuses": ["blue"]}}})


# -- stats and import -------------------------------------------------------------------------


async def test_batch_progress_counts_by_state_and_day(world: World) -> None:
    r = world.returns
    a = (await r.submit(world.ids["S001"], world.form(TODAY))).application_id
    b = (await r.submit(world.ids["S002"], world.form(TODAY + timedelta(days=1)))).application_id
    c = (await r.submit(world.ids["S004"], world.form(TODAY + timedelta(days=2)))).application_id
    assert a and b and c
    for app_id in (a, b):
        await r.decide(world.ids["C001"], app_id, True)
        await r.decide(world.ids["D001"], app_id, True)
    await r.decide(world.ids["C001"], c, False, "no")
    assert (await world.scan("S001")).allowed
    async with world.sessions() as s:
        (g1,) = await batch_progress(s, unit_ids=None, today=TODAY)
        scoped = await batch_progress(s, unit_ids=[-1], today=TODAY)
    assert (g1.applied, g1.pending, g1.approved, g1.rejected, g1.arrived) == (3, 0, 2, 1, 1)
    assert g1.arrivals_by_day == ((TODAY, 1),) and g1.arrived_today == 1
    assert g1.quota == 16 and g1.phase(TODAY) == "open"
    assert scoped[0].applied == 0
    text = render([g1], TODAY)
    assert "G1" in text and "arrivals per day" in text


async def test_import_batches_reports_bad_rows_and_writes_nothing(world: World) -> None:
    vault = DataVault.from_setting(DATA_KEY)
    good = {
        "code": "N1",
        "name": "Others",
        "kind": "non_graduate",
        "unit_codes": "",
        "arrive_from": "2026-12-01",
        "arrive_to": "2026-12-10",
        "daily_quota": "100",
    }
    rows = [
        (2, good),
        (3, {**good, "code": "N2", "kind": "teacher"}),
        (4, {**good, "code": "N3", "unit_codes": "NOPE", "arrive_to": "2026-11-01"}),
        (5, {**good, "code": "N4", "daily_quota": "0"}),
        (6, {**good}),
    ]
    report = await import_rows(world.sessions, vault, "batches", rows)
    text = "\n".join(report.errors)
    assert "line 3: kind:" in text and "line 4: unit_codes: unknown unit 'NOPE'" in text
    assert "line 4: arrive_to:" in text and "line 5: daily_quota:" in text
    assert "line 6: code: 'N1' is repeated" in text
    async with world.sessions() as s:
        assert await s.scalar(select(func.count()).select_from(ReturnApplication)) == 0
        codes = await batch_progress(s, unit_ids=None, today=TODAY)
    assert [p.code for p in codes] == ["G1"]
    dry = await import_rows(world.sessions, vault, "batches", [(2, good)], dry_run=True)
    assert dry.ok and dry.created == 1
    first = await import_rows(world.sessions, vault, "batches", [(2, good)])
    assert first.created == 1
    again = await import_rows(world.sessions, vault, "batches", [(2, good)])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)
    moved = await import_rows(
        world.sessions, vault, "batches", [(2, {**good, "daily_quota": "120"})]
    )
    assert moved.updated == 1
