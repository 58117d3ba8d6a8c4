"""Meal orders at lunch rush (issue 9): orders per second and latency, and no overselling.

    python bench/meals_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/hb_bench_meals
    python bench/meals_bench.py                      # SQLite in a temp dir

N persons (staff, so all may order) each place one order of one portion for a random item of
one canteen's lunch (ITEMS items, PORTIONS portions each, fewer than N in all), CONCURRENCY at
a time through MealService.place, as the chat does. Prints a JSON line: orders/s, p50/p95/max
latency, portions sold, and whether any item sold more than its capacity. A PostgreSQL
database named in the URL is created when missing and emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TZ = ZoneInfo("Asia/Shanghai")


async def _fresh_postgres(url: str) -> None:
    import asyncpg

    parts = urlsplit(url.replace("+asyncpg", ""))
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def run(url: str, persons: int, items: int, portions: int, concurrency: int) -> dict:
    from sqlalchemy import func, insert, select

    from bot.clock import FrozenClock
    from campus.meals.ordering import MealService
    from campus.meals.rules import MealRules
    from storage.engine import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.models import Person, Place, Unit
    from storage.models_meals import MealItem, MealOrder

    if url.startswith("postgresql"):
        await _fresh_postgres(url)
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    today = date(2026, 11, 26)
    clock = FrozenClock(datetime(2026, 11, 26, 8, 0, tzinfo=TZ).timestamp())
    now = datetime.fromtimestamp(clock.now, UTC)
    async with sessions.begin() as session:
        unit = Unit(code="BENCH", name="Bench")
        canteen = Place(code="C1", name="Canteen 1", kind="canteen")
        session.add_all([unit, canteen])
        await session.flush()
        for start in range(0, persons, 1000):
            await session.execute(
                insert(Person),
                [
                    {
                        "person_no": f"B{i:07d}",
                        "name": f"Bench {i}",
                        "category": "staff",
                        "unit_id": unit.id,
                        "id_hash": f"h{i}",
                        "id_cipher": b"x",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(persons, start + 1000))
                ],
            )
        await session.execute(
            insert(MealItem),
            [
                {
                    "canteen_id": canteen.id,
                    "day": today + timedelta(days=1),
                    "slot": "lunch",
                    "item_code": f"L{k:02d}",
                    "name": f"Dish {k}",
                    "price_cents": 1500,
                    "capacity": portions,
                    "ordered": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for k in range(items)
            ],
        )
    async with sessions() as session:
        person_ids = list((await session.execute(select(Person.id))).scalars())
        item_ids = list((await session.execute(select(MealItem.id))).scalars())
    meals = MealService(sessions, MealRules(), clock, TZ)
    rng = random.Random(9)
    work = [(pid, rng.choice(item_ids)) for pid in person_ids]
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def order(pid: int, item_id: int) -> None:
        async with gate:
            started = time.perf_counter()
            placed = await meals.place(pid, item_id, 1)
            latencies.append(time.perf_counter() - started)
            outcomes[placed.outcome.value] = outcomes.get(placed.outcome.value, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(order(pid, item_id) for pid, item_id in work))
    elapsed = time.perf_counter() - started
    async with sessions() as session:
        sold = await session.scalar(
            select(func.coalesce(func.sum(MealOrder.quantity), 0)).where(
                MealOrder.state == "placed"
            )
        )
        over = await session.scalar(
            select(func.count()).select_from(MealItem).where(MealItem.ordered > MealItem.capacity)
        )
    await engine.dispose()
    latencies.sort()
    return {
        "database": url.split(":", 1)[0],
        "orders": len(work),
        "concurrency": concurrency,
        "seconds": round(elapsed, 2),
        "orders_per_s": round(len(work) / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
        "outcomes": outcomes,
        "portions": items * portions,
        "sold": int(sold or 0),
        "oversold_items": int(over or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--persons", type=int, default=5000)
    parser.add_argument("--items", type=int, default=10)
    parser.add_argument("--portions", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/meals.db"
        result = asyncio.run(run(url, args.persons, args.items, args.portions, args.concurrency))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
