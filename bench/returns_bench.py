"""Return to campus at scale: 39,362 generated applications in 20 batches.

    python bench/returns_bench.py                       # SQLite in a temp dir
    python bench/returns_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/hb_bench_returns

Seeds a university of 20 colleges with classes of 30 (a counsellor each, a dean per college),
39,362 students with 14 days of check-ins, and one batch per college (14-day window). Then:
1. every student submits through the service layer (`ReturnService.submit`: eligibility, a
   quota place by conditional UPDATE, the application, the counsellor's push), with
   `--concurrency` submissions in flight (1 on SQLite);
2. the auto-approval rule approves them in bulk (`ReturnService.auto_approve`);
3. `healthbot stats returns` renders the progress, timed in-process and as the CLI command.
A PostgreSQL database named in the URL is created when missing and emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TZ = ZoneInfo("Asia/Shanghai")
COLLEGES = 20
CLASS_SIZE = 30
WINDOW_DAYS = 14
STREAK = 14


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


async def seed(url: str, students: int, today: object) -> None:
    from sqlalchemy import insert, select

    from storage.engine import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.models import HealthReport, Person, Unit, UnitResponsible
    from storage.models_returns import ReturnBatch, ReturnBatchUnit

    assert isinstance(today, type(datetime.now().date()))
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    now = datetime.now(UTC)
    classes = -(-students // CLASS_SIZE)
    async with sessions.begin() as s:
        await s.execute(insert(Unit), [{"code": "UNI", "name": "University"}])
        uni = await s.scalar(select(Unit.id).where(Unit.code == "UNI"))
        await s.execute(
            insert(Unit),
            [
                {"code": f"C{c:02d}", "name": f"College {c}", "parent_id": uni}
                for c in range(COLLEGES)
            ],
        )
        colleges = dict(
            (await s.execute(select(Unit.code, Unit.id).where(Unit.parent_id == uni))).all()
        )
        await s.execute(
            insert(Unit),
            [
                {
                    "code": f"K{k:05d}",
                    "name": f"Class {k}",
                    "parent_id": colleges[f"C{k % COLLEGES:02d}"],
                }
                for k in range(classes)
            ],
        )
        units = dict((await s.execute(select(Unit.code, Unit.id))).all())
        staff = [(f"D{c:02d}", units[f"C{c:02d}"]) for c in range(COLLEGES)]
        staff += [(f"T{k:05d}", units[f"K{k:05d}"]) for k in range(classes)]
        await s.execute(
            insert(UnitResponsible), [{"unit_id": uid, "person_no": no} for no, uid in staff]
        )
        rows = [
            {
                "person_no": no,
                "name": f"老师{no}",
                "category": "faculty",
                "unit_id": uid,
                "id_hash": f"h{no}",
                "id_cipher": b"x",
                "roles": "responsible",
            }
            for no, uid in staff
        ]
        rows += [
            {
                "person_no": f"S{i:06d}",
                "name": f"学生{i}",
                "category": "student",
                "unit_id": units[f"K{i // CLASS_SIZE:05d}"],
                "id_hash": f"hs{i}",
                "id_cipher": b"x",
                "roles": "",
            }
            for i in range(students)
        ]
        for start in range(0, len(rows), 5000):
            await s.execute(insert(Person), rows[start : start + 5000])
        for c in range(COLLEGES):
            start_day = today + timedelta(days=1 + (c % 4))
            await s.execute(
                insert(ReturnBatch),
                [
                    {
                        "code": f"B{c:02d}",
                        "name": f"Batch {c}",
                        "kind": ("graduate", "non_graduate", "freshman")[c % 3],
                        "arrive_from": start_day,
                        "arrive_to": start_day + timedelta(days=WINDOW_DAYS - 1),
                        "daily_quota": 200,
                        "created_at": now,
                        "updated_at": now,
                    }
                ],
            )
        batches = dict((await s.execute(select(ReturnBatch.code, ReturnBatch.id))).all())
        await s.execute(
            insert(ReturnBatchUnit),
            [
                {"batch_id": batches[f"B{c:02d}"], "unit_id": units[f"C{c:02d}"]}
                for c in range(COLLEGES)
            ],
        )
    async with sessions() as s:
        ids = list(
            (
                await s.execute(
                    select(Person.id).where(Person.category == "student").order_by(Person.id)
                )
            ).scalars()
        )
    reports = (
        {
            "person_id": pid,
            "day": today - timedelta(days=back),
            "temperature": 365,
            "submitted_at": now - timedelta(days=back),
        }
        for pid in ids
        for back in range(1, STREAK + 1)
    )
    chunk: list[dict[str, object]] = []
    for row in reports:
        chunk.append(row)
        if len(chunk) == 10_000:
            async with sessions.begin() as s:
                await s.execute(insert(HealthReport), chunk)
            chunk = []
    if chunk:
        async with sessions.begin() as s:
            await s.execute(insert(HealthReport), chunk)
    await engine.dispose()


async def run(url: str, students: int, concurrency: int) -> dict[str, object]:
    from sqlalchemy import func, select

    from bot.clock import SystemClock
    from campus.notifications import Notifications
    from campus.returns.applications import Form, Outcome, ReturnService
    from campus.returns.approvals import Words
    from campus.returns.config import AutoApprove, parse_returns
    from campus.returns.stats import batch_progress, render
    from storage.engine import create_engine, session_factory
    from storage.models import Person, Unit
    from storage.models_returns import ReturnApplication, ReturnBatch

    today = datetime.now(TZ).date()
    started = time.perf_counter()
    await seed(url, students, today)
    seeded = time.perf_counter() - started

    engine = create_engine(url)
    sessions = session_factory(engine)
    words = Words(lambda loc: "同意", lambda loc: "驳回")
    rules = parse_returns({})
    notifications = Notifications(sessions)
    service = ReturnService(sessions, notifications, rules, SystemClock(), TZ, words)
    async with sessions() as s:
        plan = (
            await s.execute(
                select(Person.id, Unit.parent_id)
                .join(Unit, Unit.id == Person.unit_id)
                .where(Person.category == "student")
                .order_by(Person.id)
            )
        ).all()
        college_of = {uid: code for uid, code in await s.execute(select(Unit.id, Unit.code))}
        windows = {
            code: start
            for code, start in await s.execute(select(ReturnBatch.code, ReturnBatch.arrive_from))
        }
    forms = []
    for n, (pid, college) in enumerate(plan):
        assert college is not None  # every class is in a college
        batch = "B" + college_of[college][1:]
        day = windows[batch] + timedelta(days=n % WINDOW_DAYS)
        region = "湖北省武汉市" if n % 10 == 0 else "江苏省南京市"  # 10% from a risk region
        forms.append(
            (
                pid,
                Form(
                    batch,
                    day,
                    ("train", "flight")[n % 2],
                    "G1234" if n % 2 == 0 else "CA1234",
                    region,
                ),
            )
        )

    outcomes: dict[str, int] = {}
    queue = iter(forms)
    latencies: list[float] = []

    async def worker() -> None:
        for pid, form in queue:
            t0 = time.perf_counter()
            result = await service.submit(pid, form)
            latencies.append(time.perf_counter() - t0)
            outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    submit_s = time.perf_counter() - t0
    assert outcomes.get(Outcome.SUBMITTED.value) == students, outcomes

    auto = ReturnService(
        sessions,
        notifications,
        replace(rules, auto=AutoApprove(enabled=True, risk_regions=("武汉",))),
        SystemClock(),
        TZ,
        words,
    )
    t0 = time.perf_counter()
    approved = await auto.auto_approve()
    auto_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    async with sessions() as s:
        text = render(await batch_progress(s, unit_ids=None, today=today), today)
    stats_s = time.perf_counter() - t0
    async with sessions() as s:
        pending = await s.scalar(
            select(func.count())
            .select_from(ReturnApplication)
            .where(ReturnApplication.state == "pending")
        )
    await engine.dispose()

    env = {**os.environ, "HEALTHBOT_DATABASE_URL": url}
    t0 = time.perf_counter()
    cli = subprocess.run(  # noqa: ASYNC221 (timed on purpose; nothing else runs)
        [str(Path(sys.executable).with_name("healthbot")), "stats", "returns"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cli_s = time.perf_counter() - t0
    assert "B19" in cli.stdout, cli.stderr
    latencies.sort()
    return {
        "database": url.split(":", 1)[0],
        "students": students,
        "batches": COLLEGES,
        "concurrency": concurrency,
        "seed_s": round(seeded, 1),
        "submit_s": round(submit_s, 1),
        "submit_per_s": round(students / submit_s),
        "submit_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "submit_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "auto_approved": approved,
        "left_pending": pending,
        "auto_approve_s": round(auto_s, 2),
        "stats_render_s": round(stats_s, 3),
        "stats_cli_s": round(cli_s, 2),
        "stats_head": text.splitlines()[:4],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--students", type=int, default=39_362)
    parser.add_argument("--concurrency", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/returns.db"
        if url.startswith("postgresql"):
            asyncio.run(_fresh_postgres(url))
        concurrency = args.concurrency or (1 if url.startswith("sqlite") else 8)
        result = asyncio.run(run(url, args.students, concurrency))
    print(json.dumps(result, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
