"""The notification service: idempotent outbox rows, in the caller's transaction, quiet hours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from bot.i18n import Translate
from campus.broadcast import BroadcastRefused, BroadcastService, Refusal
from campus.notifications import Notifications, Push, Schedule
from campus.quiet_hours import QuietHours
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, OutboxMessage, Person, Unit, UnitResponsible
from tests.support import DATA_KEY, seed_campus

SHANGHAI = ZoneInfo("Asia/Shanghai")


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI)


async def _migrated(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url)
    await upgrade(engine)
    factory = session_factory(engine)
    await seed_campus(factory, DataVault.from_setting(DATA_KEY))
    yield factory
    await engine.dispose()


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """SQLite: what does not depend on the database."""
    async for factory in _migrated(f"sqlite+aiosqlite:///{tmp_path}/n.db"):
        yield factory


@pytest.fixture(params=["sqlite", "postgresql"])
async def both(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """SQLite and a real PostgreSQL: the SQL that differs between them (ON CONFLICT, …)."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/n.db"
    else:
        url = request.getfixturevalue("postgres_url")
    async for factory in _migrated(url):
        yield factory


async def _person(sessions: async_sessionmaker[AsyncSession], no: str) -> int:
    async with sessions() as s:
        return int((await s.execute(select(Person.id).where(Person.person_no == no))).scalar_one())


async def _rows(sessions: async_sessionmaker[AsyncSession]) -> list[OutboxMessage]:
    async with sessions() as s:
        return list((await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars())


async def test_the_same_cause_twice_is_one_push(both: async_sessionmaker[AsyncSession]) -> None:
    sessions = both
    service = Notifications(sessions)
    pid = await _person(sessions, "S001")
    for expected in (True, False):
        async with sessions.begin() as s:
            added = await service.enqueue(
                s,
                person_id=pid,
                kind="reminder",
                text="打卡",
                key="checkin:S001:2026-11-26",
                now=at(12),
            )
        assert added is expected
    # Also within one transaction, and in bulk.
    async with sessions.begin() as s:
        pushes = [Push(pid, "reminder", "x", "dup"), Push(pid, "reminder", "x", "dup")]
        assert await service.enqueue_many(s, pushes, now=at(12)) == 1
    rows = await _rows(sessions)
    assert [r.idempotency_key for r in rows] == ["checkin:S001:2026-11-26", "dup"]
    assert rows[0].state == "pending" and rows[0].attempts == 0
    assert rows[0].payload == {"text": "打卡"}


async def test_a_push_commits_or_rolls_back_with_its_cause(
    both: async_sessionmaker[AsyncSession],
) -> None:
    sessions = both
    service = Notifications(sessions)
    pid = await _person(sessions, "S001")
    with pytest.raises(RuntimeError):
        async with sessions.begin() as s:
            await service.enqueue(s, person_id=pid, kind="warning", text="t", key="w1", now=at(12))
            raise RuntimeError("the cause failed")
    assert await _rows(sessions) == []


async def test_text_is_rendered_in_the_recipients_language(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = Notifications(sessions)

    def welcome(_: Translate) -> str:
        return _("Welcome back, {name}.", name="X")

    async with sessions.begin() as s:
        for no in ("S001", "T001"):  # zh_CN and en
            await service.enqueue(
                s,
                person_id=await _person(sessions, no),
                kind="greeting",
                text=welcome,
                key=f"g:{no}",
                now=at(12),
                template_data={"name": "X"},
                url="https://campus.example/x",
            )
    zh, en = await _rows(sessions)
    assert zh.payload["text"] == "欢迎回来，X。"
    assert en.payload == {
        "text": "Welcome back, X.",
        "template_data": {"name": "X"},
        "url": "https://campus.example/x",
    }


@pytest.mark.parametrize(
    ("enqueued", "urgent", "due"),
    [
        (at(12), False, at(12)),
        (at(22, 29), False, at(22, 29)),
        (at(22, 30), False, at(7, day=27)),
        (at(23, 59), False, at(7, day=27)),
        (at(0, 0), False, at(7)),
        (at(6, 59), False, at(7)),
        (at(7), False, at(7)),
        (at(23), True, at(23)),  # urgent: at once
    ],
)
async def test_quiet_hours_hold_non_urgent_pushes_until_morning(
    sessions: async_sessionmaker[AsyncSession], enqueued: datetime, urgent: bool, due: datetime
) -> None:
    clock = FrozenClock(enqueued.timestamp())  # the caller's injected clock
    now = datetime.fromtimestamp(clock.time(), UTC)
    service = Notifications(sessions, Schedule(QuietHours(), SHANGHAI))
    async with sessions.begin() as s:
        await service.enqueue(
            s,
            person_id=await _person(sessions, "S001"),
            kind="reminder",
            text="t",
            key="k",
            urgent=urgent,
            now=now,
        )
    [row] = await _rows(sessions)
    assert row.not_before == due
    assert row.urgent is urgent
    assert row.created_at == now


async def test_a_delayed_push_still_respects_quiet_hours(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    service = Notifications(sessions)
    pid = await _person(sessions, "S001")
    async with sessions.begin() as s:
        await service.enqueue(
            s, person_id=pid, kind="reminder", text="t", key="a", now=at(12), not_before=at(15)
        )
        await service.enqueue(
            s, person_id=pid, kind="reminder", text="t", key="b", now=at(12), not_before=at(23)
        )
        await service.enqueue(  # in the past: due now
            s, person_id=pid, kind="reminder", text="t", key="c", now=at(12), not_before=at(8)
        )
    assert [r.not_before for r in await _rows(sessions)] == [at(15), at(7, day=27), at(12)]


async def test_cancel_withdraws_only_pending_pushes(
    both: async_sessionmaker[AsyncSession],
) -> None:
    sessions = both
    service = Notifications(sessions)
    pid = await _person(sessions, "S001")
    async with sessions.begin() as s:
        await service.enqueue(s, person_id=pid, kind="reminder", text="t", key="r", now=at(12))
    async with sessions.begin() as s:
        assert await service.cancel(s, "r")
        assert not await service.cancel(s, "r")
        assert not await service.cancel(s, "unknown")
    [row] = await _rows(sessions)
    assert row.state == "cancelled"
    assert (await service.depth())["cancelled"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "Bad Kind"}, "push kind 'Bad Kind'"),
        ({"key": ""}, "idempotency key of 0 characters"),
        ({"key": "k" * 201}, "idempotency key of 201 characters"),
        ({"text": "长" * 700}, "push text of 2100 bytes"),
        ({"text": "  "}, "push text of 2 bytes"),
    ],
)
async def test_bad_pushes_are_refused_naming_the_value(
    sessions: async_sessionmaker[AsyncSession], change: dict[str, str], message: str
) -> None:
    service = Notifications(sessions)
    values = {"kind": "reminder", "text": "t", "key": "k", **change}
    async with sessions.begin() as s:
        with pytest.raises(ValueError, match=message):
            await service.enqueue(s, person_id=1, now=at(12), **values)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="naive"):
            await service.enqueue(
                s, person_id=1, kind="r", text="t", key="k", now=datetime(2026, 1, 1)
            )


def test_quiet_hours_windows() -> None:
    night = QuietHours(time(22, 30), time(7, 0))
    assert night.contains(time(23)) and night.contains(time(3)) and not night.contains(time(7))
    day = QuietHours(time(12), time(14))  # a window that does not span midnight
    assert day.release(at(13), SHANGHAI) == at(14)
    assert day.release(at(14), SHANGHAI) == at(14)
    assert day.release(at(11), SHANGHAI) == at(11)
    off = QuietHours(enabled=False)
    assert off.release(at(23), SHANGHAI) == at(23)
    assert QuietHours(time(1), time(1)).release(at(1), SHANGHAI) == at(1)  # empty window
    with pytest.raises(ValueError, match="naive"):
        night.release(datetime(2026, 1, 1), SHANGHAI)


# -- broadcast --------------------------------------------------------------------------------


async def _tree(sessions: async_sessionmaker[AsyncSession]) -> None:
    """CS (seeded: S001, S002, T001) ⊃ CS1 (S101, faculty F101); MATH (M001). T001 runs CS."""
    async with sessions.begin() as s:
        cs = (await s.execute(select(Unit).where(Unit.code == "CS"))).scalar_one()
        cs1 = Unit(code="CS1", name="CS Class 1", parent_id=cs.id)
        math = Unit(code="MATH", name="Mathematics")
        s.add_all([cs1, math])
        await s.flush()
        for no, category, unit in [
            ("S101", "student", cs1),
            ("F101", "faculty", cs1),
            ("M001", "student", math),
        ]:
            s.add(
                Person(
                    person_no=no,
                    name=no,
                    category=category,
                    unit_id=unit.id,
                    id_hash=no,
                    id_cipher=b"x",
                    locale="zh_CN",
                )
            )
        s.add(
            Person(
                person_no="L001",
                name="Left",
                category="student",
                unit_id=cs.id,
                id_hash="L",
                id_cipher=b"x",
                state="left",
            )
        )
        s.add(UnitResponsible(unit_id=cs.id, person_no="T001"))


async def test_broadcast_reaches_each_recipient_once(
    both: async_sessionmaker[AsyncSession],
) -> None:
    sessions = both
    await _tree(sessions)
    service = BroadcastService(sessions, Notifications(sessions), FrozenClock(at(12).timestamp()))
    result = await service.send(unit_code="CS", text="Fire drill at 3 pm", broadcast_id="b1")
    assert (result.recipients, result.queued, result.unbound) == (3, 3, 3)  # not the one who left
    again = await service.send(unit_code="CS", text="Fire drill at 3 pm", broadcast_id="b1")
    assert (again.recipients, again.queued) == (3, 0)
    sub = await service.send(
        unit_code="CS", text="Staff meeting", include_subunits=True, categories=("faculty",)
    )
    assert sub.recipients == 1
    everyone = await service.send(unit_code="CS", text="All", include_subunits=True)
    assert everyone.recipients == 5
    rows = await _rows(sessions)
    assert len(rows) == 3 + 1 + 5
    assert {r.payload["text"] for r in rows[:3]} == {
        "【Computer Science通知】Fire drill at 3 pm",
        "Notice from Computer Science: Fire drill at 3 pm",  # T001 reads English
    }
    assert rows[0].idempotency_key == f"broadcast:b1:{rows[0].person_id}"
    assert rows[0].payload["template_data"] == {
        "unit": "Computer Science",
        "content": "Fire drill at 3 pm",
    }
    async with sessions() as s:
        audits = await s.execute(select(func.count()).where(AuditEntry.action == "broadcast"))
        assert audits.scalar_one() == 4


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"unit_code": "NOPE", "text": "x"}, Refusal.UNKNOWN_UNIT),
        ({"unit_code": "CS", "text": "  "}, Refusal.EMPTY),
        ({"unit_code": "CS", "text": "x" * 501}, Refusal.TOO_LONG),
        ({"unit_code": "CS", "text": "x", "categories": ("alien",)}, Refusal.UNKNOWN_CATEGORY),
    ],
)
async def test_broadcast_refusals(
    sessions: async_sessionmaker[AsyncSession], options: dict[str, object], reason: Refusal
) -> None:
    service = BroadcastService(
        sessions, Notifications(sessions), FrozenClock(), ("student", "faculty")
    )
    with pytest.raises(BroadcastRefused) as caught:
        await service.send(**options)  # type: ignore[arg-type]
    assert caught.value.reason is reason
    assert await _rows(sessions) == []


def test_quiet_hours_follow_the_campus_clock_across_dst() -> None:
    """A campus in a zone with daylight saving: the window's end is 07:00 local either way."""
    berlin = ZoneInfo("Europe/Berlin")
    night = QuietHours()
    before = datetime(2026, 3, 28, 23, 0, tzinfo=berlin)  # the night the clocks go forward
    assert night.release(before, berlin) == datetime(2026, 3, 29, 7, 0, tzinfo=berlin)
    assert night.release(before, berlin) - before == timedelta(hours=7)  # 8 wall-clock hours
