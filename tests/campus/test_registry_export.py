"""Registry export: the import format back, decrypted, audited; export then import is a no-op."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from bot.cli import main
from campus.registry.exporter import run_export
from campus.registry.formats import COLUMNS
from tests.support import DATA_KEY

if TYPE_CHECKING:
    from conftest import Registry


async def _populate(registry: Registry) -> None:
    units = await registry.load(
        "units",
        [
            {"code": "UNI", "name": "University", "responsible_nos": "T0002;T0001"},
            {"code": "CS", "name": "Computer, Science", "parent_code": "UNI"},
        ],
    )
    places = await registry.load(
        "places",
        [
            {"code": "MAIN", "name": "Main campus", "kind": "campus", "policy": "green_only"},
            {"code": "H101", "name": 'House "101"', "kind": "house", "parent_code": "MAIN"},
        ],
    )
    persons = await registry.load(
        "persons",
        [
            registry.person(1, responsible_no="T0001", home_place_code="H101", category="family"),
            registry.person(2, person_no="T0001", category="faculty", roles="admin;guard"),
            registry.person(3, id_number="G1234567", phone="", locale="en"),
        ],
    )
    assert units.ok and places.ok and persons.ok


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_export_writes_the_import_format_in_clear(registry: Registry) -> None:
    await _populate(registry)
    units, places, persons = [await registry.export(k) for k in ("units", "places", "persons")]
    assert units.splitlines()[0] == ",".join(COLUMNS["units"])
    assert _rows(units) == [
        {"code": "CS", "name": "Computer, Science", "parent_code": "UNI", "responsible_nos": ""},
        {"code": "UNI", "name": "University", "parent_code": "", "responsible_nos": "T0001;T0002"},
    ]
    assert _rows(places)[0] == {
        "code": "H101",
        "name": 'House "101"',
        "kind": "house",
        "parent_code": "MAIN",
        "policy": "open",
    }
    exported = {row["person_no"]: row for row in _rows(persons)}
    assert list(exported) == ["S00001", "S00003", "T0001"]
    assert exported["S00001"] == {
        "person_no": "S00001",
        "name": "学生1",
        "category": "family",
        "unit_code": "CS",
        "id_number": registry.id_number(1),
        "phone": "13800000001",
        "roles": "",
        "responsible_no": "T0001",
        "home_place_code": "H101",
        "locale": "zh_CN",
    }
    assert exported["T0001"]["roles"] == "guard;admin"
    assert (exported["S00003"]["id_number"], exported["S00003"]["phone"]) == ("G1234567", "")


async def test_export_then_import_changes_nothing(registry: Registry) -> None:
    await _populate(registry)
    before = await registry.all("SELECT * FROM persons ORDER BY id")
    for kind in ("units", "places", "persons"):
        path = registry.raw((await registry.export(kind)).encode())
        report = await registry.load(kind, path)
        assert (report.errors, report.created, report.updated) == ([], 0, 0), kind
        assert report.unchanged == {"units": 2, "places": 2, "persons": 3}[kind]
    assert await registry.all("SELECT * FROM persons ORDER BY id") == before


async def test_every_export_is_audited(registry: Registry) -> None:
    await _populate(registry)
    await registry.export("persons")
    rows = await registry.all(
        "SELECT actor, action, subject_person_id, reason FROM audit_log WHERE action = 'export'"
    )
    assert [tuple(r) for r in rows] == [("cli", "export", None, "export persons")]


async def test_run_export_from_settings(registry: Registry) -> None:
    await _populate(registry)
    out = io.StringIO()
    await run_export(registry.settings, "places", out)
    assert [r["code"] for r in _rows(out.getvalue())] == ["H101", "MAIN"]


def test_cli_import_export_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`healthbot import` / `healthbot export` on SQLite, as an operator runs them."""
    monkeypatch.setenv("HEALTHBOT_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", DATA_KEY)
    monkeypatch.chdir(tmp_path)  # no stray .env
    units = tmp_path / "units.csv"
    units.write_text("code,name,parent_code,responsible_nos\nUNI,University,,T1\nCS,CS,UNI,\n")
    runner = CliRunner()

    bad = tmp_path / "bad.csv"
    bad.write_text("code,name,parent_code,responsible_nos\nUNI,University,NOPE,\n")
    result = runner.invoke(main, ["import", "units", str(bad)])
    assert result.exit_code == 1
    assert "line 2: parent_code: unknown unit 'NOPE'" in result.output

    result = runner.invoke(main, ["import", "units", str(units), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "units: 2 rows, 2 created, 0 updated, 0 unchanged (dry run" in result.output
    result = runner.invoke(main, ["import", "units", str(units)])
    assert "units: 2 rows, 2 created" in result.output

    exported = tmp_path / "out.csv"
    result = runner.invoke(main, ["export", "units", "-o", str(exported)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["import", "units", str(exported)])
    assert "units: 2 rows, 0 created, 0 updated, 2 unchanged" in result.output

    # A file of one kind offered as another is refused whole, naming the columns it lacks.
    result = runner.invoke(main, ["import", "batches", str(units)])
    assert result.exit_code == 1
    assert "line 1: missing column 'kind'" in result.output
    assert "nothing written" in result.output
