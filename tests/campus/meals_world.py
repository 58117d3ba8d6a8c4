"""A small campus for the meals tests: canteens, homes, persons in every situation, menus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import FrozenClock
from campus.meals.ordering import MealService
from campus.meals.rules import MealRules
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import Person, Place, Unit
from storage.models_meals import MealItem

TZ = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 11, 26)
TOMORROW = TODAY + timedelta(days=1)


def campus_time(day: date, hour: int, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).timestamp()


@dataclass
class World:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: FrozenClock
    meals: MealService
    persons: dict[str, int] = field(default_factory=dict)
    places: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)

    def at(self, day: date, hour: int, minute: int = 0) -> None:
        self.clock.now = campus_time(day, hour, minute)

    async def add_item(
        self, key: str, canteen: str, day: date, slot: str, price: int, capacity: int
    ) -> int:
        async with self.sessions.begin() as session:
            item = MealItem(
                canteen_id=self.places[canteen],
                day=day,
                slot=slot,
                item_code=key.split(":")[-1],
                name=f"Dish {key}",
                price_cents=price,
                capacity=capacity,
                ordered=0,
            )
            session.add(item)
            await session.flush()
            self.items[key] = item.id
        return item.id

    async def add_persons(self, count: int, prefix: str = "P") -> list[int]:
        async with self.sessions.begin() as session:
            unit_id = (await session.execute(select(Unit.id).limit(1))).scalar_one()
            people = [
                Person(
                    person_no=f"{prefix}{n:04d}",
                    name=f"学生{n}",
                    category="staff",
                    unit_id=unit_id,
                    id_hash=f"h{prefix}{n}",
                    id_cipher=b"x",
                    locale="en",
                )
                for n in range(count)
            ]
            session.add_all(people)
            await session.flush()
            return [p.id for p in people]

    async def ordered(self, key: str) -> int:
        async with self.sessions() as session:
            item = await session.get(MealItem, self.items[key])
            assert item is not None
            return item.ordered


async def build_world(url: str, rules: MealRules | None = None) -> World:
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    clock = FrozenClock(campus_time(TODAY, 8))
    world = World(engine, sessions, clock, MealService(sessions, rules or MealRules(), clock, TZ))
    now = datetime.fromtimestamp(clock.now, UTC)
    async with sessions.begin() as session:
        unit = Unit(code="U", name="University")
        session.add(unit)
        await session.flush()
        places: dict[str, Place] = {}
        for code, name, kind, parent in [
            ("MAIN", "Main campus", "campus", None),
            ("CANTEEN-1", "Canteen 1", "canteen", "MAIN"),
            ("CANTEEN-2", "Canteen 2", "canteen", "MAIN"),
            ("DORM-1", "Dorm 1", "dorm", "MAIN"),
            ("GRID-1", "Grid 1", "grid", "MAIN"),
            ("HOUSE-1", "House 1", "house", "GRID-1"),
        ]:
            place = Place(
                code=code,
                name=name,
                kind=kind,
                parent_id=places[parent].id if parent else None,
            )
            session.add(place)
            await session.flush()
            places[code] = place
        world.places = {code: p.id for code, p in places.items()}
        for no, name, category, home, returned_days, status, state, roles in [
            ("S1", "张三", "student", "DORM-1", 2, "green", "active", ""),  # delivery
            ("S2", "李四", "student", "DORM-1", 30, "green", "active", ""),  # pick-up
            ("S3", "王五", "student", "DORM-1", None, "green", "active", ""),  # not back
            ("T1", "Jane Smith", "staff", "HOUSE-1", None, "green", "active", "canteen"),
            ("T2", "赵六", "staff", "HOUSE-1", None, "yellow", "active", ""),  # delivery
            ("S4", "孙七", "student", "DORM-1", 2, "green", "left", ""),  # not active
            ("S5", "周八", "student", None, 1, "green", "active", ""),  # delivery, no home
        ]:
            person = Person(
                person_no=no,
                name=name,
                category=category,
                unit_id=unit.id,
                id_hash=f"hash-{no}",
                id_cipher=b"x",
                roles=roles,
                home_place_id=places[home].id if home else None,
                returned_at=now - timedelta(days=returned_days) if returned_days else None,
                status=status,
                state=state,
                locale="en" if category == "staff" else "zh_CN",
            )
            session.add(person)
            await session.flush()
            world.persons[no] = person.id
    return world


async def world_at(url: str, rules: MealRules | None = None) -> AsyncIterator[World]:
    world = await build_world(url, rules)
    try:
        yield world
    finally:
        await world.engine.dispose()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/meals.db"
