"""`healthbot trace` and `healthbot incident …` (issue 10) on an SQLite file."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, Person
from tests.campus.test_tracing_support import seed_places
from tests.health_support import seed
from tests.support import DATA_KEY


def _prepare(url: str) -> None:
    """The health campus, the places, and S001 with S002 in the library an hour ago."""

    async def run() -> None:
        from storage.models import AccessRecord

        engine = create_engine(url)
        await upgrade(engine)
        sessions = session_factory(engine)
        ids = await seed(sessions, datetime.now(UTC) - timedelta(days=30))
        places = await seed_places(sessions)
        start = datetime.now(UTC) - timedelta(hours=3)
        async with sessions.begin() as s:
            for no, begin, end in [("S001", 0, 60), ("S002", 20, 50)]:
                for direction, minutes in (("in", begin), ("out", end)):
                    s.add(
                        AccessRecord(
                            person_id=ids[no],
                            place_id=places.ids["LIB"],
                            direction=direction,
                            at=start + timedelta(minutes=minutes),
                            allowed=True,
                            reason="",
                            method="guard",
                        )
                    )
        await engine.dispose()

    asyncio.run(run())


def _query(url: str, stmt: object) -> list[object]:
    async def run() -> list[object]:
        engine = create_engine(url)
        async with session_factory(engine)() as s:
            rows = list((await s.execute(stmt)).all())  # type: ignore[call-overload]
        await engine.dispose()
        return rows

    return asyncio.run(run())


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    db = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("HEALTHBOT_DATABASE_URL", db)
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", DATA_KEY)
    _prepare(db)
    return db


def test_trace_and_an_incident_from_the_command_line(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "contacts.csv"
    result = runner.invoke(main, ["trace", "S001", "--days", "2", "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert "S001: 1 contacts" in result.output and "S002" in result.output
    assert "1 encounters written to" in result.output
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["person_no"], r["name"], r["overlap_minutes"]) for r in rows] == [
        ("S002", "李四", "30")
    ]
    assert rows[0]["place_code"] == "LIB" and rows[0]["visit_from"].endswith("+08:00")

    bad = runner.invoke(main, ["trace", "NOBODY"])
    assert bad.exit_code == 1 and "no person with number 'NOBODY'" in bad.output
    assert runner.invoke(main, ["trace", "S001", "--days", "0"]).exit_code == 2

    opened = runner.invoke(main, ["incident", "open", "S001", "positive", "test", "--by", "dr"])
    assert opened.exit_code == 0, opened.output
    assert opened.output.strip() == "incident 1: S001 green -> red, 1 contacts"
    again = runner.invoke(main, ["incident", "open", "S001", "again"])
    assert again.exit_code == 1 and "already_open (incident 1)" in again.output
    assert runner.invoke(main, ["incident", "mark", "1"]).exit_code == 1  # neither nor --all
    marked = runner.invoke(main, ["incident", "mark", "1", "--all"])
    assert marked.output.strip() == "marked 1: S002"
    shown = runner.invoke(main, ["incident", "show", "1"])
    assert "incident 1 (open): S001 positive test" in shown.output
    assert "cli:dr opened positive test" in shown.output and "marked S002" in shown.output
    assert runner.invoke(main, ["incident", "close", "1", "done"]).output.strip() == (
        "incident 1 closed"
    )
    assert runner.invoke(main, ["incident", "close", "1"]).exit_code == 1
    assert runner.invoke(main, ["incident", "show", "9"]).exit_code == 1

    statuses = dict(_query(url, select(Person.person_no, Person.status)))  # type: ignore[arg-type]
    assert statuses["S001"] == "red" and statuses["S002"] == "yellow"
    actions = {a for (a,) in _query(url, select(AuditEntry.action))}  # type: ignore[misc]
    assert {"trace", "incident_open", "close_contact", "incident_read", "incident_close"} <= (
        actions
    )
