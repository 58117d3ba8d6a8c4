"""The health jobs in the scheduler's table and schedule, run through run_job; the status CLI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from bot.kv import MemoryKV
from bot.settings import Settings
from campus.health.checkin import Draft
from campus.rules import load_rules
from scheduler.jobs import JOBS, run_job
from scheduler.runner import job_context
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, OutboxMessage, Person, WeChatAccount
from tests.health_support import START, Campus, open_campus, seed
from tests.support import DATA_KEY

SCHEDULE = {
    "health_rollover": "5 0 * * *",
    "health_remind_morning": "0 9 * * *",
    "health_remind_afternoon": "0 14 * * *",
    "health_summary": "30 15 * * *",
    "health_escalate": "*/5 * * * *",
}


def test_the_jobs_are_in_the_table_and_the_schedule() -> None:
    rules = load_rules()
    for name, cron in SCHEDULE.items():
        assert name in JOBS
        entry = rules.scheduled(name)
        assert entry is not None and entry.cron == cron and entry.enabled


@pytest.fixture
async def campus(tmp_path: Path) -> AsyncIterator[tuple[Campus, Settings]]:
    url = f"sqlite+aiosqlite:///{tmp_path}/j.db"
    settings = Settings(_env_file=None, database_url=url, data_key=DATA_KEY)  # type: ignore[call-arg]
    async for c in open_campus(url):
        yield c, settings


async def test_the_jobs_run_through_run_job(campus: tuple[Campus, Settings]) -> None:
    c, settings = campus
    ctx = job_context(settings, c.sessions, MemoryKV(), c.clock)
    async with c.sessions.begin() as s:
        s.add(WeChatAccount(openid="o_s2", person_id=c.ids["S002"]))
    assert await run_job(ctx, "health_rollover") == (
        f"{START.date() - timedelta(days=1)}: 11 missed, 0 status changes, 0 warnings"
    )
    assert await run_job(ctx, "health_rollover") == "nothing to roll over"
    await c.kit.checkins.submit(c.ids["S001"], Draft(384))
    assert await run_job(ctx, "health_remind_morning") == "1 reminders queued"
    assert await run_job(ctx, "health_remind_morning") == "0 reminders queued"
    assert await run_job(ctx, "health_remind_afternoon") == "1 reminders queued"
    assert await run_job(ctx, "health_summary") == "4 summaries queued"
    c.later(hours=2, minutes=1)
    assert await run_job(ctx, "health_escalate") == "1 warnings escalated"
    c.at(START + timedelta(days=2, hours=-9, minutes=-55))  # 00:05 two days on
    rolled = await run_job(ctx, "health_rollover")
    assert rolled.startswith(f"{START.date()}: 10 missed, 10 status changes, 10 warnings; ")
    async with c.sessions() as s:
        s002 = await s.scalar(select(Person.status).where(Person.person_no == "S002"))
    assert s002 == "yellow"


def test_status_commands(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def prepare() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await seed(session_factory(engine), START)
        await engine.dispose()

    asyncio.run(prepare())
    env = {
        "HEALTHBOT_DATABASE_URL": url,
        "HEALTHBOT_DATA_KEY": DATA_KEY,
        "HEALTHBOT_RULES_FILE": "",
    }
    runner = CliRunner()
    done = runner.invoke(main, ["status", "set", "S001", "RED", "close", "contact"], env=env)
    assert done.exit_code == 0, done.output
    assert done.output.strip() == "S001: green -> red"
    shown = runner.invoke(main, ["status", "show", "S001"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "S001: red" in shown.output and "close contact" in shown.output
    assert "green -> red (override, cli:cli, rules 1)" in shown.output
    again = runner.invoke(main, ["status", "recompute", "S001"], env=env)
    assert again.exit_code == 0 and "recomputed: red ['override']" in again.output
    missing = runner.invoke(main, ["status", "set", "NOPE", "green", "x"], env=env)
    assert missing.exit_code == 1 and "no person with number 'NOPE'" in missing.output
    refused = runner.invoke(main, ["status", "set", "S001", "blue", "x"], env=env)
    assert refused.exit_code == 2

    async def check() -> tuple[str, str, int]:
        engine = create_engine(url)
        async with session_factory(engine)() as s:
            audit = await s.scalar(
                select(AuditEntry.actor).where(AuditEntry.action == "status_override")
            )
            read = await s.scalar(
                select(AuditEntry.actor).where(AuditEntry.action == "status_read")
            )
            pushes = len((await s.execute(select(OutboxMessage.id))).all())
        await engine.dispose()
        return str(audit), str(read), pushes

    assert asyncio.run(check()) == ("cli:cli", "cli", 2)  # the person told, the counsellor warned
