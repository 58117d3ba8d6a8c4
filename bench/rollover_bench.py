"""The day roll-over for a whole campus (issue 6, "Benchmark"); see bench/README.md.

    .venv/bin/python bench/rollover_bench.py                       # SQLite, 100,000 persons
    .venv/bin/python bench/rollover_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/hb_bench

1. Creates a fresh database (an SQLite file in a temp dir, or the PostgreSQL database named in
   --database-url, dropped and re-created), migrates it with the project's migrations.
2. Seeds --persons persons (default 100,000) in a unit tree (university → 10 colleges → 20
   classes each, a responsible person for every unit), each with a health state and
   --history-days days of reports (default 14: what a campus running for weeks holds, and what
   the travel rule reads). On the day rolled over, --missing (default 10%) of them did not
   report; --also-missed-before (default 30%) of those had missed the day before too, so the
   missed-report rule turns them yellow and warns them and their counsellors.
3. Runs the `health_rollover` job once through scheduler.jobs.run_job (the code path of the
   scheduler and of `healthbot jobs run health_rollover`), on a clock set to 00:05 of the next
   campus day, and times it. Counts the SQL statements it issued (executemany counts once).
4. Checks the outcome (every missing person counted, the expected number turned yellow, one
   warning each) and prints one line of JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import event, func, insert, select, text

from bot.clock import FrozenClock
from bot.kv import MemoryKV
from bot.settings import Settings
from scheduler.jobs import run_job
from scheduler.runner import job_context
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import (
    HealthReport,
    HealthRollover,
    HealthState,
    HealthWarning,
    OutboxMessage,
    Person,
    Unit,
    UnitResponsible,
)

TZ = ZoneInfo("Asia/Shanghai")
CHUNK = 20_000


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def recreate_pg(url: str) -> None:
    import asyncpg

    base, name = url.replace("+asyncpg", "").rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_pg(url: str) -> None:
    import asyncpg

    base, name = url.replace("+asyncpg", "").rsplit("/", 1)
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(sessions: Any, args: argparse.Namespace, day: date) -> dict[str, int]:
    rnd = random.Random(6)
    created = datetime.combine(day - timedelta(days=60), dtime(9), TZ)
    async with sessions.begin() as s:
        univ = (
            await s.execute(insert(Unit).values(code="U", name="大学").returning(Unit.id))
        ).scalar_one()
        units = [univ]
        classes = []
        for c in range(10):
            college = (
                await s.execute(
                    insert(Unit)
                    .values(code=f"C{c}", name=f"学院{c}", parent_id=univ)
                    .returning(Unit.id)
                )
            ).scalar_one()
            units.append(college)
            for k in range(20):
                cls = (
                    await s.execute(
                        insert(Unit)
                        .values(code=f"C{c}-{k}", name=f"班级{c}-{k}", parent_id=college)
                        .returning(Unit.id)
                    )
                ).scalar_one()
                units.append(cls)
                classes.append(cls)
        await s.execute(
            insert(UnitResponsible),
            [{"unit_id": u, "person_no": f"R{i:06d}"} for i, u in enumerate(units)],
        )
    persons = []
    for i in range(args.persons):
        responsible = i < len(units)
        persons.append(
            {
                "person_no": f"R{i:06d}" if responsible else f"P{i:07d}",
                "name": f"测试{i}",
                "category": "faculty" if responsible else "student",
                "unit_id": units[i] if responsible else classes[i % len(classes)],
                "id_hash": f"{i:064d}",
                "id_cipher": b"x",
                "roles": "responsible" if responsible else "",
                "locale": "zh_CN",
                "state": "active",
                "status": "green",
                "created_at": created,
                "updated_at": created,
            }
        )
    async with sessions.begin() as s:
        for start in range(0, len(persons), CHUNK):
            await s.execute(insert(Person), persons[start : start + CHUNK])
    async with sessions() as s:
        ids = [pid for (pid,) in await s.execute(select(Person.id).order_by(Person.id))]
    students = ids[len(units) :]
    missing = set(rnd.sample(students, int(len(ids) * args.missing)))
    missed_before = set(rnd.sample(sorted(missing), int(len(missing) * args.also_missed_before)))
    log(
        f"seeded {len(ids)} persons in {len(units)} units; {len(missing)} miss the day, "
        f"{len(missed_before)} of them missed the day before too"
    )
    states, reports = [], []
    for pid in ids:
        last = day - timedelta(days=2 if pid in missed_before else 1 if pid in missing else 0)
        states.append(
            {
                "person_id": pid,
                "reasons": "[]",
                "rule_version": "1",
                "missed_days": 1 if pid in missed_before else 0,
                "rolled_day": day - timedelta(days=1),
                "updated_at": created,
            }
        )
        for back in range(args.history_days):
            d = day - timedelta(days=back)
            if d > last:
                continue
            reports.append(
                {
                    "person_id": pid,
                    "day": d,
                    "temperature": 363 + (pid + back) % 5,
                    "symptoms": "",
                    "location": "campus",
                    "region": "",
                    "contact": False,
                    "travel": False,
                    "source": "quick",
                    "revision": 1,
                    "submitted_at": datetime.combine(d, dtime(8, 30), TZ),
                }
            )
    async with sessions.begin() as s:
        for start in range(0, len(states), CHUNK):
            await s.execute(insert(HealthState), states[start : start + CHUNK])
        for start in range(0, len(reports), CHUNK):
            await s.execute(insert(HealthReport), reports[start : start + CHUNK])
        s.add(
            HealthRollover(
                day=day - timedelta(days=1),
                done_at=datetime.combine(day, dtime(0, 5), TZ),
                rule_version="1",
            )
        )
    log(f"seeded {len(reports)} reports ({args.history_days} days of history)")
    return {
        "persons": len(ids),
        "missing": len(missing),
        "missed_before": len(missed_before),
        "reports": len(reports),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="hb-rollover-"))
    url = args.database_url or f"sqlite+aiosqlite:///{folder}/rollover.db"
    if url.startswith("postgresql"):
        await recreate_pg(url)
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    day = date(2026, 11, 24)
    seeded = await seed(sessions, args, day)
    if engine.dialect.name == "sqlite":
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
    else:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM ANALYZE"))

    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    settings = Settings(_env_file=None, database_url=url, data_key="bench")  # type: ignore[call-arg]
    clock = FrozenClock(datetime.combine(day + timedelta(days=1), dtime(0, 5), TZ).timestamp())
    ctx = job_context(settings, sessions, MemoryKV(), clock)
    event.listen(engine.sync_engine, "before_cursor_execute", count)
    log("rolling over …")
    started = time.perf_counter()
    summary = await run_job(ctx, "health_rollover")
    elapsed = time.perf_counter() - started
    event.remove(engine.sync_engine, "before_cursor_execute", count)
    log(f"health_rollover: {summary}")

    async with sessions() as s:
        yellow = await s.scalar(
            select(func.count()).select_from(Person).where(Person.status == "yellow")
        )
        warnings = await s.scalar(select(func.count()).select_from(HealthWarning))
        pushes = await s.scalar(select(func.count()).select_from(OutboxMessage))
        counted = await s.scalar(
            select(func.count()).select_from(HealthState).where(HealthState.rolled_day == day)
        )
    await engine.dispose()
    if url.startswith("postgresql") and not args.keep:
        await drop_pg(url)
    ok = (
        counted == seeded["missing"]
        and yellow == seeded["missed_before"]
        and warnings == seeded["missed_before"]
    )
    result = {
        "database": engine.dialect.name,
        **seeded,
        "seconds": round(elapsed, 2),
        "sql_statements": statements,
        "turned_yellow": yellow,
        "warnings": warnings,
        "outbox_rows": pushes,
        "checks_passed": ok,
        "target_met": ok and (elapsed < 30 if engine.dialect.name == "sqlite" else None),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    result["folder"] = str(folder)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    p.add_argument("--persons", type=int, default=100_000)
    p.add_argument("--missing", type=float, default=0.10)
    p.add_argument("--also-missed-before", type=float, default=0.30)
    p.add_argument("--history-days", type=int, default=14)
    p.add_argument("--json-out", default=None, help="also write the figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = p.parse_args()
    result = asyncio.run(main_async(args))
    folder = result.pop("folder")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    print("BENCH_JSON " + json.dumps(result, ensure_ascii=False), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    if not result["checks_passed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
