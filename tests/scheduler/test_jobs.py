"""Jobs: the table, housekeeping, `healthbot jobs|broadcast|scheduler`, the scheduler in serve."""

from __future__ import annotations

import asyncio
import os
import re
import selectors
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from bot import appkeys as K
from bot.app import create_app
from bot.cli import main
from bot.clock import FrozenClock
from bot.kv import MemoryKV
from campus.rules import RulesError, parse_rules
from campus.secrets import DataVault
from scheduler.jobs import JobContext, UnknownJob, run_job
from scheduler.runner import Scheduler, job_context
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import OutboxMessage, Unit, UnitResponsible
from tests.scheduler.conftest import NOON, Rig, rig_settings
from tests.support import DATA_KEY, AppServer, seed_campus


async def test_housekeeping_requeues_purges_and_counts(rig: Rig) -> None:
    await rig.bind("S001")
    for key in ("old", "crashed", "fresh"):
        await rig.push("S001", key=key)
    async with rig.sessions.begin() as s:
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == "old")
            .values(state="sent", not_before=rig.now() - timedelta(days=31))
        )
        await s.execute(
            update(OutboxMessage)
            .where(OutboxMessage.idempotency_key == "crashed")
            .values(state="sending", attempts=1, claimed_until=rig.now() - timedelta(seconds=1))
        )
    ctx = job_context(
        rig.app[K.SETTINGS], rig.sessions, rig.app[K.KV_STORE], rig.clock, rig.notifications
    )
    summary = await run_job(ctx, "outbox_housekeeping")
    assert summary.startswith("requeued 1, abandoned 0, purged 1; pending 2, sending 0, sent 0")
    assert [r.idempotency_key for r in await rig.rows()] == ["crashed", "fresh"]
    with pytest.raises(UnknownJob, match=r"unknown job 'nope'; known: .*outbox_housekeeping"):
        await run_job(ctx, "nope")


async def test_a_schedule_naming_an_unknown_job_stops_start_up(tmp_path: Path) -> None:
    settings = rig_settings(tmp_path, "http://127.0.0.1:9")
    engine = create_engine(settings.database_url)
    try:
        ctx = job_context(settings, session_factory(engine), MemoryKV(), FrozenClock())
        bad = JobContext(
            ctx.settings,
            ctx.sessions,
            ctx.kv,
            ctx.keys,
            ctx.clock,
            parse_rules({"schedule": {"daily_sumary": "0 8 * * *"}}, "rules.yaml"),
            ctx.notifications,
        )
        with pytest.raises(RulesError, match=r"rules\.yaml: schedule\.daily_sumary: no such job"):
            Scheduler(bad, api=None)  # type: ignore[arg-type]
    finally:
        await engine.dispose()


async def test_serve_runs_the_scheduler_and_stops_it(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = rig_settings(tmp_path, "http://127.0.0.1:9")
    app = create_app(settings, clock=FrozenClock(NOON.timestamp()), scheduler=True)
    client = await aiohttp_client(AppServer(app))
    runner = app[K.SCHEDULER]
    assert runner.elector.is_leader  # alone, in memory
    assert runner.dispatcher is not None
    assert "outbox_housekeeping" in runner.next_runs()
    metrics = await (await client.get("/metrics")).text()
    assert "healthbot_outbox_sent_total" in metrics or "healthbot_outbox_sent" in metrics
    await client.close()
    assert runner.next_runs() == {}


def test_the_default_app_has_no_scheduler(tmp_path: Path) -> None:
    app = create_app(rig_settings(tmp_path, "http://127.0.0.1:9"))
    assert K.SCHEDULER not in app


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"

    async def prepare() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        sessions = session_factory(engine)
        await seed_campus(sessions, DataVault.from_setting(DATA_KEY))
        async with sessions.begin() as s:
            cs = (await s.execute(select(Unit).where(Unit.code == "CS"))).scalar_one()
            s.add(Unit(code="CS1", name="CS Class 1", parent_id=cs.id))
            s.add(UnitResponsible(unit_id=cs.id, person_no="T001"))
        await engine.dispose()

    asyncio.run(prepare())
    return {
        "HEALTHBOT_DATABASE_URL": url,
        "HEALTHBOT_DATA_KEY": DATA_KEY,
        "HEALTHBOT_REDIS_URL": "",
        "HEALTHBOT_RULES_FILE": "",
    }


def test_jobs_list_and_run(cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["jobs", "list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    assert "outbox_housekeeping" in listed.output and "*/5 * * * *" in listed.output
    ran = runner.invoke(main, ["jobs", "run", "outbox_housekeeping"], env=cli_env)
    assert ran.exit_code == 0, ran.output
    assert ran.output.startswith("outbox_housekeeping: requeued 0, abandoned 0, purged 0")
    unknown = runner.invoke(main, ["jobs", "run", "nope"], env=cli_env)
    assert unknown.exit_code == 1 and "unknown job 'nope'" in unknown.output


def test_broadcast_command(cli_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["broadcast", "--unit", "CS", "--id", "drill", "Fire drill at 3 pm"]
    first = runner.invoke(main, args, env=cli_env)
    assert first.exit_code == 0, first.output
    assert "broadcast drill to CS (Computer Science): 3 recipients, 3 queued now" in first.output
    assert "3 without WeChat" in first.output
    again = runner.invoke(main, args, env=cli_env)
    assert "3 recipients, 0 queued now" in again.output  # each recipient once
    filtered = runner.invoke(
        main,
        ["broadcast", "--unit", "CS", "--include-subunits", "--category", "staff", "hi"],
        env=cli_env,
    )
    assert "1 recipients" in filtered.output, filtered.output
    for bad, message in [
        (["--unit", "NOPE", "x"], "unknown unit 'NOPE'"),
        (["--unit", "CS", "--category", "alien", "x"], "unknown category 'alien'"),
        (["--unit", "CS", " "], "the notice is empty"),
    ]:
        result = runner.invoke(main, ["broadcast", *bad], env=cli_env)
        assert result.exit_code == 1 and message in result.output, result.output

    async def count() -> int:
        engine = create_engine(cli_env["HEALTHBOT_DATABASE_URL"])
        async with session_factory(engine)() as s:
            n = len((await s.execute(select(OutboxMessage.id))).all())
        await engine.dispose()
        return n

    assert asyncio.run(count()) == 4


def test_the_scheduler_command_runs_until_terminated(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    healthbot = Path(sys.executable).parent / "healthbot"
    log = tmp_path / "scheduler.log"
    with log.open("w") as err:  # a file, not a pipe: a chatty process can't block on it
        proc = subprocess.Popen(
            [str(healthbot), "scheduler"],
            env={**os.environ, **cli_env},
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as selector:
                selector.register(proc.stdout, selectors.EVENT_READ)
                assert selector.select(timeout=20), "the scheduler did not start"
            assert "scheduler running" in proc.stdout.readline()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()  # type: ignore[union-attr]
    output = log.read_text()
    assert proc.returncode == 0, output
    assert re.search(r"scheduler started: \d+ cron jobs, dispatcher on", output), output
    assert "Traceback" not in output
