"""Guard scans and self check-ins against a real database: records, reasons, capacity."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from campus.access import gate as gate_module
from campus.access.duty import IN, OUT
from campus.access.gate import AccessService, occupancy
from campus.access.keys import KeyRing
from campus.access.passes import IssuedPass, PassService
from campus.access.places import PlaceDirectory, PlaceInfo
from campus.access.policies import DEFAULTS, Reason, parse_policies
from campus.secrets import DataVault
from storage.behind import Backlogged
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import AccessRecord, Person, Place
from tests.access_support import person_id, seed_places
from tests.support import DATA_KEY, resident_id, seed_campus

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 11, 25, 4, 0, tzinfo=UTC).timestamp()  # 12:00 in Shanghai


@dataclass
class Gate:
    sessions: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    passes: PassService
    access: AccessService
    vault: DataVault

    async def place(self, code: str) -> PlaceInfo:
        found = await self.access.places.by_code(code)
        assert found is not None
        return found

    async def token(self, person_no: str) -> str:
        holder = await self.passes.holder(await person_id(self.sessions, person_no))
        assert holder is not None
        issued = await self.passes.issue(holder, datetime.fromtimestamp(NOON, TZ).date())
        assert isinstance(issued, IssuedPass)
        return issued.token

    async def records(self) -> list[AccessRecord]:
        await self.access.flushed()  # records of plain decisions are written behind
        async with self.sessions() as s:
            return list((await s.execute(select(AccessRecord).order_by(AccessRecord.id))).scalars())


@pytest.fixture(params=["sqlite", "postgresql"])
async def gate(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gate]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/gate.db"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    vault = DataVault.from_setting(DATA_KEY)
    await seed_campus(sessions, vault)
    await seed_places(sessions, vault)
    async with sessions.begin() as s:
        campus_id = (await s.execute(select(Place.id).where(Place.code == "CAMPUS"))).scalar_one()
        s.add(
            Place(
                code="READING",
                name="Reading Room",
                kind="library",
                policy="small",
                parent_id=campus_id,
            )
        )
        s.add(
            Place(
                code="ODD",
                name="Odd Place",
                kind="other",
                policy="no_such_policy",
                parent_id=campus_id,
            )
        )
    clock = FrozenClock(NOON)
    ring = KeyRing(
        sessions,
        vault,
        campus="wxgate",
        max_validity=600,
        monotonic=clock.monotonic,
        wall=clock.time,
    )
    passes = PassService(sessions, ring, clock, validity=600)
    policies = parse_policies({**DEFAULTS, "small": {"statuses": ["green"], "capacity": 5}})
    access = AccessService(
        sessions, passes, policies, PlaceDirectory(sessions, clock.monotonic), clock, TZ
    )
    yield Gate(sessions, clock, passes, access, vault)
    await access.close()
    await engine.dispose()


async def test_a_scan_is_recorded_with_everything_tracing_needs(gate: Gate) -> None:
    guard = await person_id(gate.sessions, "G001")
    student = await person_id(gate.sessions, "S001")
    gate_n = await gate.place("GATE-N")
    decision = await gate.access.scan(await gate.token("S001"), gate_n, guard, IN)
    assert decision.allowed and decision.reason is None
    assert decision.identity is not None
    assert (decision.identity.masked_name, decision.identity.category, decision.identity.unit) == (
        "张*",
        "student",
        "Computer Science",
    )
    (record,) = await gate.records()
    assert (record.person_id, record.place_id, record.direction, record.allowed) == (
        student,
        gate_n.id,
        "in",
        True,
    )
    assert (record.method, record.verifier_id, record.reason) == ("guard", guard, "")
    assert record.at == datetime.fromtimestamp(NOON, UTC)


@pytest.mark.parametrize("gate", ["sqlite"], indirect=True)  # SQLite's file lock
async def test_a_stalled_database_write_does_not_hold_the_guard_s_answer(
    gate: Gate, tmp_path: Path
) -> None:
    guard = await person_id(gate.sessions, "G001")
    gate_n = await gate.place("GATE-N")
    token = await gate.token("S001")
    # Another process holds SQLite's write lock (a checkpoint, an import) for as long as
    # it likes: the scan is answered from the read, and its record waits for the lock.
    other = sqlite3.connect(tmp_path / "gate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        decision = await asyncio.wait_for(gate.access.scan(token, gate_n, guard, IN), 2)
        assert decision.allowed
        await asyncio.sleep(0.2)
        assert other.execute("SELECT count(*) FROM access_records").fetchone() == (0,)
    finally:
        other.rollback()
        other.close()
    (record,) = await gate.records()
    assert (record.place_id, record.direction, record.allowed) == (gate_n.id, "in", True)


@pytest.mark.parametrize("gate", ["sqlite"], indirect=True)  # SQLite's file lock
async def test_scans_fail_rather_than_queue_records_without_bound(
    gate: Gate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gate_module, "ROOM_TIMEOUT", 0.3)
    monkeypatch.setattr(gate.access._records, "_backlog", 1)
    guard = await person_id(gate.sessions, "G001")
    gate_n = await gate.place("GATE-N")
    first = await gate.token("S001")
    more = [await gate.token(no) for no in ("S002", "T001", "S001")]
    other = sqlite3.connect(tmp_path / "gate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the records' writer cannot commit
        assert (await gate.access.scan(first, gate_n, guard, IN)).allowed  # queued: 1 of 1
        started = asyncio.get_running_loop().time()
        failed = await asyncio.gather(
            *(gate.access.scan(token, gate_n, guard, IN) for token in more),
            return_exceptions=True,
        )
        assert all(isinstance(f, Backlogged) for f in failed)
        # They went as one batch and failed together: one wait for the writer (0.3 s), not
        # one for the batch and one for each scan after it (1.2 s).
        assert asyncio.get_running_loop().time() - started < 0.75
    finally:
        other.rollback()
        other.close()
    # The answered scan's record is kept; the failed one left none.
    (record,) = await gate.records()
    assert record.person_id == await person_id(gate.sessions, "S001")


async def test_refusals_are_recorded_with_their_reason(gate: Gate) -> None:
    guard = await person_id(gate.sessions, "G001")
    gate_n, odd = await gate.place("GATE-N"), await gate.place("ODD")
    token = await gate.token("S001")
    bad = await gate.access.scan("HC1.nonsense", gate_n, guard, IN)
    assert (bad.allowed, bad.reason, bad.identity) == (False, Reason.INVALID_CODE, None)
    assert (await gate.access.scan(token, odd, guard, IN)).reason is Reason.NO_POLICY
    async with gate.sessions.begin() as s:
        await s.execute(update(Person).where(Person.person_no == "S001").values(status="red"))
    red = await gate.access.scan(token, gate_n, guard, IN)
    assert (red.allowed, red.reason, red.status) == (False, Reason.STATUS, "red")
    # Leaving is always allowed (and recorded).
    assert (await gate.access.scan(token, gate_n, guard, OUT)).allowed
    gate.clock.advance(600)
    expired = await gate.access.scan(token, gate_n, guard, IN)
    assert (expired.reason, expired.identity) == (Reason.EXPIRED_CODE, None)
    records = await gate.records()
    assert [(r.person_id is None, r.direction, r.allowed, r.reason) for r in records] == [
        (True, "in", False, "invalid_code"),
        (False, "in", False, "no_policy"),
        (False, "in", False, "status"),
        (False, "out", True, ""),
        (True, "in", False, "expired_code"),
    ]


async def test_a_genuine_code_for_a_vanished_person(gate: Gate) -> None:
    from campus.access.passes import Holder

    today = datetime.fromtimestamp(NOON, TZ).date()
    ghost = await gate.passes.issue(Holder(999_999, "x", "green", "active", None), today)
    assert isinstance(ghost, IssuedPass)
    decision = await gate.access.scan(ghost.token, await gate.place("GATE-N"), 1, IN)
    assert decision.reason is Reason.UNKNOWN_PERSON and decision.identity is None


async def _persons(gate: Gate, count: int) -> list[int]:
    async with gate.sessions.begin() as s:
        unit_id = (await s.execute(select(Person.unit_id).limit(1))).scalar_one()
        rows = []
        for i in range(count):
            rid = resident_id(f"110105200101{i:05d}")
            rows.append(
                Person(
                    person_no=f"C{i:03d}",
                    name=f"人{i}",
                    category="student",
                    unit_id=unit_id,
                    id_hash=gate.vault.lookup_hash(rid, "id"),
                    id_cipher=gate.vault.encrypt(rid),
                )
            )
        s.add_all(rows)
        await s.flush()
        return [r.id for r in rows]


async def test_capacity_holds_under_concurrent_entries(gate: Gate) -> None:
    reading = await gate.place("READING")
    people = await _persons(gate, 20)
    decisions = await asyncio.gather(*(gate.access.check_in(pid, reading, IN) for pid in people))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 5
    assert {d.reason for d in decisions if not d.allowed} == {Reason.FULL}
    today = datetime.fromtimestamp(NOON, TZ).date()
    assert await occupancy(gate.sessions, reading.id, today) == 5
    records = await gate.records()
    assert len(records) == 20 and sum(r.allowed for r in records) == 5
    # One leaves: one more may enter, and then it is full again.
    inside = [pid for pid, d in zip(people, decisions, strict=True) if d.allowed]
    assert (await gate.access.check_in(inside[0], reading, OUT)).allowed
    assert await occupancy(gate.sessions, reading.id, today) == 4
    waiting = [pid for pid, d in zip(people, decisions, strict=True) if not d.allowed]
    assert (await gate.access.check_in(waiting[0], reading, IN)).allowed
    assert (await gate.access.check_in(waiting[1], reading, IN)).reason is Reason.FULL
    # Exits nobody scanned do not keep the place full tomorrow.
    gate.clock.advance(24 * 3600)
    assert (await gate.access.check_in(waiting[1], reading, IN)).allowed
    tomorrow = datetime.fromtimestamp(gate.clock.time(), TZ).date()
    assert await occupancy(gate.sessions, reading.id, tomorrow) == 1


async def test_a_batch_mixing_a_counted_place_and_a_gate_is_decided_and_recorded(
    gate: Gate,
) -> None:
    """Entries at a place with a capacity and at a plain gate in one batch: the batch takes
    the path that counts occupancy, and every entry is recorded once."""
    reading, gate_n = await gate.place("READING"), await gate.place("GATE-N")
    people = await _persons(gate, 8)
    guard = await person_id(gate.sessions, "G001")
    tokens = [await gate.token(no) for no in ("S001", "S002")]
    decisions = await asyncio.gather(
        *(gate.access.check_in(pid, reading, IN) for pid in people),
        *(gate.access.scan(token, gate_n, guard, IN) for token in tokens),
    )
    at_reading, at_gate = decisions[:8], decisions[8:]
    assert sum(d.allowed for d in at_reading) == 5
    assert {d.reason for d in at_reading if not d.allowed} == {Reason.FULL}
    assert all(d.allowed for d in at_gate)
    today = datetime.fromtimestamp(NOON, TZ).date()
    assert await occupancy(gate.sessions, reading.id, today) == 5
    records = await gate.records()
    assert sorted((r.place_id, r.allowed) for r in records) == sorted(
        [(reading.id, True)] * 5 + [(reading.id, False)] * 3 + [(gate_n.id, True)] * 2
    )


async def test_exits_never_drive_occupancy_below_zero(gate: Gate) -> None:
    reading = await gate.place("READING")
    (pid,) = await _persons(gate, 1)
    for _ in range(3):
        assert (await gate.access.check_in(pid, reading, OUT)).allowed
    today = datetime.fromtimestamp(NOON, TZ).date()
    assert await occupancy(gate.sessions, reading.id, today) == 0
    assert (await gate.access.check_in(pid, reading, IN)).allowed
    assert await occupancy(gate.sessions, reading.id, today) == 1


async def test_residents_by_the_place_tree(gate: Gate) -> None:
    dorm, room = await gate.place("DORM-1"), await gate.place("DORM-1-101")
    s001 = await person_id(gate.sessions, "S001")
    s002 = await person_id(gate.sessions, "S002")
    assert (await gate.access.check_in(s001, dorm, IN)).allowed  # home is a room inside
    assert (await gate.access.check_in(s002, dorm, IN)).reason is Reason.NOT_RESIDENT
    assert (await gate.access.check_in(s001, room, IN)).allowed


async def test_a_new_place_is_found_without_waiting_for_the_cache(gate: Gate) -> None:
    await gate.place("GATE-N")  # loads the tree
    async with gate.sessions.begin() as s:
        s.add(Place(code="NEW", name="New", kind="gate", policy="open"))
    assert await gate.access.places.by_code("NEW") is None  # within the miss throttle
    gate.clock.advance(6)
    found: Any = await gate.access.places.by_code("NEW")
    assert found is not None and found.name == "New"
