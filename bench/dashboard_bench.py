"""The dashboard's server time with 100,000 persons and 30 days of reports (issue 11).

    python bench/dashboard_bench.py                      # SQLite (temp file) and PostgreSQL
    python bench/dashboard_bench.py --only sqlite --persons 20000
    python bench/dashboard_bench.py --no-index           # without 0009's index, to compare

PostgreSQL: a database of its own (`healthbot_dash_bench` on HEALTHBOT_BENCH_PG, default
postgres@127.0.0.1:5432) is created, seeded with INSERT … SELECT generate_series, measured and
dropped. SQLite: a temp file, seeded with executemany batches. The campus: one university,
20 colleges of 50 classes, N persons (2 % yellow, 0.5 % red, 80 % back), a report from 90 % of
them on each of 30 days (80 % so far today), warnings, 4 gates with a day's entries, two return
batches, one canteen's menu and orders.

What is timed is what a page view costs the server: verify the link, re-read the viewer, the
aggregate queries, the audit rows, the HTML. Once to warm up, then the median of --runs, for
an admin at the top, an admin at one college, and a college's responsible person.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bot.clock import SystemClock  # noqa: E402
from bot.web_dashboard import render  # noqa: E402
from campus.dashboard.service import DashboardService  # noqa: E402
from campus.health.days import campus_day  # noqa: E402
from campus.links import LinkSigner  # noqa: E402
from storage.engine import create_engine, session_factory  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
KEY = "bench-dashboard-key"
COLLEGES, CLASSES = 20, 50  # classes per college
UNITS = 1 + COLLEGES + COLLEGES * CLASSES
GATES = 4
INDEX = "ix_health_reports_day_person_id"


# -- PostgreSQL: INSERT … SELECT generate_series ---------------------------------------------


def pg_seed_sql(n: int, days: int, today: date) -> list[str]:
    t = f"DATE '{today.isoformat()}'"
    now = "now()"
    first_class = 2 + COLLEGES
    return [
        f"""INSERT INTO units (id, code, name, parent_id, created_at, updated_at)
            SELECT 1, 'UNIV', 'University', NULL, {now}, {now}""",
        f"""INSERT INTO units (id, code, name, parent_id, created_at, updated_at)
            SELECT c + 1, 'C' || lpad(c::text, 2, '0'), 'College ' || c, 1, {now}, {now}
            FROM generate_series(1, {COLLEGES}) c""",
        f"""INSERT INTO units (id, code, name, parent_id, created_at, updated_at)
            SELECT {first_class} + k, 'K' || lpad(k::text, 4, '0'), 'Class ' || k,
                   2 + k / {CLASSES}, {now}, {now}
            FROM generate_series(0, {COLLEGES * CLASSES - 1}) k""",
        f"SELECT setval(pg_get_serial_sequence('units', 'id'), {UNITS})",
        f"""INSERT INTO persons (id, person_no, name, category, unit_id, id_hash, id_cipher, roles,
                                 locale, state, status, returned_at, created_at, updated_at)
            SELECT i, 'P' || lpad(i::text, 7, '0'), '学生' || i, 'student',
                   {first_class} + (i % {COLLEGES * CLASSES}), md5(i::text), '\\x00'::bytea,
                   CASE i WHEN 1 THEN 'admin' WHEN 2 THEN 'responsible' ELSE '' END,
                   'zh_CN', 'active',
                   CASE WHEN i % 200 = 0 THEN 'red' WHEN i % 50 = 0 THEN 'yellow'
                        ELSE 'green' END,
                   CASE WHEN i % 5 <> 0 THEN {now} END, {now}, {now}
            FROM generate_series(1, {n}) i""",
        f"SELECT setval(pg_get_serial_sequence('persons', 'id'), {n})",
        "INSERT INTO unit_responsibles (unit_id, person_no) VALUES (2, 'P0000002')",
        f"""INSERT INTO health_reports (person_id, day, temperature, symptoms, location, region,
                                        contact, travel, source, revision, submitted_at)
            SELECT i, {t} - d, 365, '', 'campus', '', false, false, 'quick', 1, {now}
            FROM generate_series(1, {n}) i, generate_series(0, {days - 1}) d
            WHERE CASE WHEN d = 0 THEN i % 10 < 8 ELSE (i * 7 + d) % 10 <> 0 END""",
        f"""INSERT INTO health_warnings (person_id, day, cause, reason, status, level, created_at,
                                         acked_at)
            SELECT i, {t} - d, 'fever', '[]', 'yellow', 0, {now},
                   CASE WHEN (i + d) % 2 = 0 THEN {now} END
            FROM generate_series(250, {n}, 250) i, generate_series(0, 13) d""",
        f"""INSERT INTO places (id, code, name, kind, policy, created_at, updated_at)
            SELECT g, 'GATE-' || g, 'Gate ' || g, 'gate', 'green_only', {now}, {now}
            FROM generate_series(1, {GATES}) g""",
        f"""INSERT INTO places (id, code, name, kind, policy, created_at, updated_at)
            VALUES ({GATES + 1}, 'CANTEEN-1', 'Canteen 1', 'canteen', 'open', {now}, {now})""",
        f"SELECT setval(pg_get_serial_sequence('places', 'id'), {GATES + 1})",
        f"""INSERT INTO access_records (person_id, place_id, direction, at, allowed, reason, method)
            SELECT i, 1 + i % {GATES}, CASE WHEN i % 7 = 0 THEN 'out' ELSE 'in' END,
                   ({t}::timestamp AT TIME ZONE 'Asia/Shanghai')
                     + make_interval(hours => 6 + i % 16, mins => i % 60),
                   i % 50 <> 0, '', 'guard'
            FROM generate_series(1, {n}, 2) i""",
        f"""INSERT INTO return_batches (id, code, name, kind, arrive_from, arrive_to, daily_quota,
                                        created_at, updated_at)
            VALUES (1, 'B1', 'Batch 1', 'graduate', {t} - 10, {t} + 5, 3000, {now}, {now}),
                   (2, 'B2', 'Batch 2', 'non_graduate', {t} + 6, {t} + 20, 3000, {now}, {now})""",
        f"""INSERT INTO return_applications (person_id, batch_id, arrive_on, transport,
                 transport_no, region, state, live, checkin_days, step, step_since, escalations,
                 submitted_at, updated_at, decided_by, reason, arrived_at, arrived_on)
            SELECT i, 1 + i % 2, {t} - 10 + i % 16, 'train', '', 'Wuhan',
                   CASE WHEN i % 2 = 1 THEN 'pending' WHEN i % 16 <= 10 THEN 'arrived'
                        ELSE 'approved' END,
                   CASE WHEN i % 2 = 1 OR i % 16 > 10 THEN 1 END, 14, 0, {now}, 0,
                   {now}, {now}, '', '',
                   CASE WHEN i % 2 = 0 AND i % 16 <= 10 THEN {now} END,
                   CASE WHEN i % 2 = 0 AND i % 16 <= 10 THEN {t} - 10 + i % 16 END
            FROM generate_series(3, {n}, 3) i""",
        f"""INSERT INTO meal_items (id, canteen_id, day, slot, item_code, name, price_cents,
                                    capacity, ordered, created_at, updated_at)
            SELECT k, {GATES + 1}, {t}, (ARRAY['breakfast','lunch','dinner'])[1 + k % 3],
                   'I' || k, 'Item ' || k, 1200, 5000, 0, {now}, {now}
            FROM generate_series(1, 15) k""",
        f"""INSERT INTO meal_orders (person_id, item_id, quantity, price_cents, delivery, state,
                                     created_at)
            SELECT i, 1 + i % 15, 1, 1200, i % 3 = 0, 'placed', {now}
            FROM generate_series(1, {n}, 5) i""",
        "ANALYZE",
    ]


async def pg_database(server: str, name: str, sql: str) -> None:
    import asyncpg

    parts = urlsplit(server.replace("+asyncpg", ""))
    conn = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- SQLite: executemany batches -------------------------------------------------------------


def sqlite_seed(path: Path, n: int, days: int, today: date) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    db = sqlite3.connect(path)
    first_class = 2 + COLLEGES

    def many(sql: str, rows: Any) -> None:
        batch: list[tuple[Any, ...]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == 50_000:
                db.executemany(sql, batch)
                batch.clear()
        if batch:
            db.executemany(sql, batch)

    def d(day: date) -> str:
        return day.isoformat()

    many(
        "INSERT INTO units (id, code, name, parent_id, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(1, "UNIV", "University", None, now, now)]
        + [(c + 1, f"C{c:02d}", f"College {c}", 1, now, now) for c in range(1, COLLEGES + 1)]
        + [
            (first_class + k, f"K{k:04d}", f"Class {k}", 2 + k // CLASSES, now, now)
            for k in range(COLLEGES * CLASSES)
        ],
    )
    many(
        "INSERT INTO persons (id, person_no, name, category, unit_id, id_hash, id_cipher, roles,"
        " locale, state, status, returned_at, created_at, updated_at)"
        " VALUES (?, ?, ?, 'student', ?, ?, x'00', ?, 'zh_CN', 'active', ?, ?, ?, ?)",
        (
            (
                i,
                f"P{i:07d}",
                f"学生{i}",
                first_class + i % (COLLEGES * CLASSES),
                f"h{i}",
                {1: "admin", 2: "responsible"}.get(i, ""),
                "red" if i % 200 == 0 else "yellow" if i % 50 == 0 else "green",
                now if i % 5 else None,
                now,
                now,
            )
            for i in range(1, n + 1)
        ),
    )
    db.execute("INSERT INTO unit_responsibles (unit_id, person_no) VALUES (2, 'P0000002')")
    many(
        "INSERT INTO health_reports (person_id, day, temperature, symptoms, location, region,"
        " contact, travel, source, revision, submitted_at)"
        " VALUES (?, ?, 365, '', 'campus', '', 0, 0, 'quick', 1, ?)",
        (
            (i, d(today - timedelta(days=k)), now)
            for k in range(days)
            for i in range(1, n + 1)
            if (i % 10 < 8 if k == 0 else (i * 7 + k) % 10 != 0)
        ),
    )
    many(
        "INSERT INTO health_warnings (person_id, day, cause, reason, status, level, created_at,"
        " acked_at) VALUES (?, ?, 'fever', '[]', 'yellow', 0, ?, ?)",
        (
            (i, d(today - timedelta(days=k)), now, now if (i + k) % 2 == 0 else None)
            for i in range(250, n + 1, 250)
            for k in range(14)
        ),
    )
    many(
        "INSERT INTO places (id, code, name, kind, policy, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(g, f"GATE-{g}", f"Gate {g}", "gate", "green_only", now, now) for g in range(1, 5)]
        + [(GATES + 1, "CANTEEN-1", "Canteen 1", "canteen", "open", now, now)],
    )
    midnight = datetime(today.year, today.month, today.day, tzinfo=TZ).astimezone(UTC)
    many(
        "INSERT INTO access_records (person_id, place_id, direction, at, allowed, reason, method)"
        " VALUES (?, ?, ?, ?, ?, '', 'guard')",
        (
            (
                i,
                1 + i % GATES,
                "out" if i % 7 == 0 else "in",
                (midnight + timedelta(hours=6 + i % 16, minutes=i % 60)).strftime(
                    "%Y-%m-%d %H:%M:%S.%f"
                ),
                int(i % 50 != 0),
            )
            for i in range(1, n + 1, 2)
        ),
    )
    many(
        "INSERT INTO return_batches (id, code, name, kind, arrive_from, arrive_to, daily_quota,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 3000, ?, ?)",
        [
            (
                1,
                "B1",
                "Batch 1",
                "graduate",
                d(today - timedelta(10)),
                d(today + timedelta(5)),
                now,
                now,
            ),
            (
                2,
                "B2",
                "Batch 2",
                "non_graduate",
                d(today + timedelta(6)),
                d(today + timedelta(20)),
                now,
                now,
            ),
        ],
    )

    def application(i: int) -> tuple[Any, ...]:
        arrive = today - timedelta(days=10) + timedelta(days=i % 16)
        arrived = i % 2 == 0 and i % 16 <= 10
        state = "pending" if i % 2 else "arrived" if arrived else "approved"
        return (
            i,
            1 + i % 2,
            d(arrive),
            state,
            None if arrived else 1,
            now,
            now,
            now,
            now if arrived else None,
            d(arrive) if arrived else None,
        )

    many(
        "INSERT INTO return_applications (person_id, batch_id, arrive_on, transport,"
        " transport_no, region, state, live, checkin_days, step, step_since, escalations,"
        " submitted_at, updated_at, decided_by, reason, arrived_at, arrived_on)"
        " VALUES (?, ?, ?, 'train', '', 'Wuhan', ?, ?, 14, 0, ?, 0, ?, ?, '', '', ?, ?)",
        (application(i) for i in range(3, n + 1, 3)),
    )
    many(
        "INSERT INTO meal_items (id, canteen_id, day, slot, item_code, name, price_cents,"
        " capacity, ordered, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1200, 5000, 0,"
        " ?, ?)",
        [
            (
                k,
                GATES + 1,
                d(today),
                ("breakfast", "lunch", "dinner")[k % 3],
                f"I{k}",
                f"Item {k}",
                now,
                now,
            )
            for k in range(1, 16)
        ],
    )
    many(
        "INSERT INTO meal_orders (person_id, item_id, quantity, price_cents, delivery, state,"
        " created_at) VALUES (?, ?, 1, 1200, ?, 'placed', ?)",
        ((i, 1 + i % 15, int(i % 3 == 0), now) for i in range(1, n + 1, 5)),
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()


# -- the measurement -------------------------------------------------------------------------


async def measure(url: str, runs: int) -> dict[str, dict[str, float]]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    service = DashboardService(sessions, LinkSigner(KEY), SystemClock(), TZ, "https://bench")
    now = datetime.now(UTC)
    signer = LinkSigner(KEY)
    admin = signer.sign("dashboard", {"p": 1, "u": "all", "l": "zh_CN"}, now, timedelta(hours=2))
    dean = signer.sign("dashboard", {"p": 2, "u": [2], "l": "en"}, now, timedelta(hours=2))
    cases = {
        "admin, whole university": (admin, None),
        "admin, one college": (admin, "C01"),
        "college's responsible": (dean, None),
    }
    results = {}
    try:
        for name, (token, unit) in cases.items():
            times = []
            size = 0
            for _ in range(runs + 1):
                started = time.perf_counter()
                view = await service.open(token, unit)
                html = render(view, service, view.locale)
                times.append(time.perf_counter() - started)
                size = len(html.encode())
            warm = times[1:]
            results[name] = {
                "median_ms": round(1000 * statistics.median(warm), 1),
                "min_ms": round(1000 * min(warm), 1),
                "max_ms": round(1000 * max(warm), 1),
                "first_ms": round(1000 * times[0], 1),
                "persons": view.dashboard.focus.persons,
                "reported_today": view.dashboard.focus.reported_today,
                "html_kb": round(size / 1024, 1),
            }
            print(f"  {name:<26} {results[name]}", flush=True)
    finally:
        await engine.dispose()
    return results


async def drop_index(url: str) -> None:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP INDEX IF EXISTS {INDEX}"))
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def run_sqlite(n: int, days: int, runs: int, no_index: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "dash.db"
        url = f"sqlite+aiosqlite:///{path}"
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()
        started = time.perf_counter()
        sqlite_seed(path, n, days, campus_day(datetime.now(UTC), TZ))
        seeded = time.perf_counter() - started
        print(f"SQLite: seeded in {seeded:.1f} s ({path.stat().st_size / 2**20:.0f} MB)")
        if no_index:
            await drop_index(url)
        return {"seed_s": round(seeded, 1), "views": await measure(url, runs)}


async def run_postgres(server: str, n: int, days: int, runs: int, no_index: bool) -> dict[str, Any]:
    name = "healthbot_dash_bench"
    url = urlunsplit(urlsplit(server)._replace(path=f"/{name}"))
    await pg_database(server, name, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await pg_database(server, name, f'CREATE DATABASE "{name}"')
    try:
        engine = create_engine(url)
        await upgrade(engine)
        started = time.perf_counter()
        async with engine.begin() as conn:
            for sql in pg_seed_sql(n, days, campus_day(datetime.now(UTC), TZ)):
                await conn.execute(text(sql))
        seeded = time.perf_counter() - started
        await engine.dispose()
        print(f"PostgreSQL: seeded in {seeded:.1f} s")
        if no_index:
            await drop_index(url)
        return {"seed_s": round(seeded, 1), "views": await measure(url, runs)}
    finally:
        await pg_database(server, name, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--no-index", action="store_true", help="Drop 0009's index first.")
    parser.add_argument(
        "--pg",
        default=os.environ.get(
            "HEALTHBOT_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    results: dict[str, Any] = {
        "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "persons": args.persons,
        "days": args.days,
        "index": not args.no_index,
        "load": os.getloadavg()[0],
    }
    if args.only in (None, "sqlite"):
        results["sqlite"] = await run_sqlite(args.persons, args.days, args.runs, args.no_index)
    if args.only in (None, "postgres"):
        results["postgres"] = await run_postgres(
            args.pg, args.persons, args.days, args.runs, args.no_index
        )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"dashboard_{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
