"""Health test helpers: a migrated database with a small unit tree, the health services on a
frozen clock, and what they pushed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Result, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from campus.health.rules import HealthRules, parse
from campus.health.services import HealthKit, Words, health_kit
from campus.notifications import Notifications, Schedule
from campus.quiet_hours import QuietHours
from campus.rules import load_rules
from campus.secrets import DataVault
from handlers import keywords as kw
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import OutboxMessage, Person, Unit, UnitResponsible
from tests.support import DATA_KEY, resident_id

SHANGHAI = ZoneInfo("Asia/Shanghai")
# A Monday morning on campus: 2026-03-02 10:00 in Shanghai.
START = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)

# (code, name, parent, responsible person numbers)
UNITS = [
    ("UNIV", "示范大学", None, ["A001"]),
    ("CS", "计算机学院", "UNIV", ["F002"]),
    ("CS-2101", "计算机2101班", "CS", ["F001"]),
    ("LOG", "后勤处", "UNIV", ["F004"]),
]
# (person_no, name, category, unit, roles, responsible_no, locale)
PERSONS = [
    ("S001", "张三丰", "student", "CS-2101", "", None, "zh_CN"),
    ("S002", "李四", "student", "CS-2101", "", None, "zh_CN"),
    ("T001", "Jane Smith", "staff", "CS-2101", "", None, "en"),
    ("F001", "陈老师", "faculty", "CS-2101", "responsible", None, "zh_CN"),
    ("F002", "刘院长", "faculty", "CS", "responsible", None, "zh_CN"),
    ("A001", "何管理员", "staff", "UNIV", "admin", None, "zh_CN"),
    ("F004", "黄处长", "staff", "LOG", "responsible", None, "en"),
    ("H001", "郑医生", "staff", "LOG", "health_officer", None, "zh_CN"),
    ("G001", "马保安", "staff", "LOG", "guard", None, "zh_CN"),
    ("W001", "冯建国", "contractor", "LOG", "", "F004", "zh_CN"),
    ("P001", "Lucas Martin", "partner", "CS-2101", "", "F002", "en"),  # hosted by the dean
]
WORDS = Words(checkin=kw.CHECKIN, ack=kw.ACK, set_status=kw.SET_STATUS)


def shipped_rules() -> HealthRules:
    return parse(load_rules().sections)


async def seed(sessions: async_sessionmaker[AsyncSession], created: datetime) -> dict[str, int]:
    vault = DataVault.from_setting(DATA_KEY)
    ids: dict[str, int] = {}
    async with sessions.begin() as session:
        units: dict[str, int] = {}
        for code, name, parent, _resp in UNITS:
            unit = Unit(code=code, name=name, parent_id=units.get(parent) if parent else None)
            session.add(unit)
            await session.flush()
            units[code] = unit.id
        for code, _name, _parent, responsibles in UNITS:
            for no in responsibles:
                session.add(UnitResponsible(unit_id=units[code], person_no=no))
        for i, (no, name, category, unit, roles, resp, locale) in enumerate(PERSONS):
            rid = resident_id(f"1101052000010{i:04d}")
            person = Person(
                person_no=no,
                name=name,
                category=category,
                unit_id=units[unit],
                id_hash=vault.lookup_hash(rid, "id"),
                id_cipher=vault.encrypt(rid),
                roles=roles,
                responsible_id=ids.get(resp) if resp else None,
                locale=locale,
                created_at=created,
            )
            session.add(person)
            await session.flush()
            ids[no] = person.id
    return ids


@dataclass
class Campus:
    sessions: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    kit: HealthKit
    ids: dict[str, int]
    seen: set[int] = field(default_factory=set)

    def at(self, when: datetime) -> None:
        """Move the clock (forwards only) to `when`."""
        target = when.timestamp()
        assert target >= self.clock.now, "the clock only moves forwards"
        self.clock.advance(target - self.clock.now)

    def later(self, **delta: float) -> None:
        self.clock.advance(timedelta(**delta).total_seconds())

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now, SHANGHAI)

    async def pushes(self, *, new: bool = True) -> list[tuple[str, str, str]]:
        """(person_no, kind, text) of the outbox rows (only those not seen before, by default)."""
        stmt = (
            select(OutboxMessage.id, Person.person_no, OutboxMessage.kind, OutboxMessage.payload)
            .join(Person, Person.id == OutboxMessage.person_id)
            .order_by(OutboxMessage.id)
        )
        async with self.sessions() as session:
            rows = (await session.execute(stmt)).all()
        out = []
        for row_id, no, kind, payload in rows:
            if new and row_id in self.seen:
                continue
            self.seen.add(row_id)
            out.append((no, kind, str(payload["text"])))
        return out

    async def query(self, stmt: Any) -> Result[Any]:
        """A read in a session of its own, closed at once (its connection back in the pool);
        the rows are buffered."""
        async with self.sessions() as session:
            return (await session.execute(stmt)).freeze()()

    async def status(self, person_no: str) -> str:
        async with self.sessions() as session:
            value = await session.scalar(select(Person.status).where(Person.person_no == person_no))
        return str(value)

    async def scalar(self, stmt: Any) -> Any:
        async with self.sessions() as session:
            return await session.scalar(stmt)


async def open_campus(
    url: str, rules: HealthRules | None = None, start: datetime = START, *, seeded: bool = False
) -> AsyncIterator[Campus]:
    """The campus on `url`: migrated and seeded now, or (`seeded`) as it already is."""
    engine = create_engine(url)
    sessions = session_factory(engine)
    clock = FrozenClock(start.timestamp())
    if seeded:
        async with sessions() as session:
            rows = (await session.execute(select(Person.person_no, Person.id))).all()
        ids = {no: pid for no, pid in rows}
    else:
        await upgrade(engine)
        ids = await seed(sessions, start - timedelta(days=30))
    notifications = Notifications(sessions, Schedule(QuietHours(enabled=False), SHANGHAI))
    kit = health_kit(sessions, rules or shipped_rules(), notifications, clock, SHANGHAI, WORDS)
    try:
        yield Campus(sessions, clock, kit, ids)
    finally:
        await engine.dispose()


def id_tail(person_no: str) -> str:
    """The last 6 of the seeded person's ID number (what binding asks for)."""
    i = next(i for i, p in enumerate(PERSONS) if p[0] == person_no)
    return resident_id(f"1101052000010{i:04d}")[-6:]
