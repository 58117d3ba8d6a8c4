"""`healthbot import menus` (issue 9): idempotent upsert, every bad row reported, all or nothing."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main
from campus.meals.menus import COLUMNS
from tests.campus.conftest import Registry
from tests.support import DATA_KEY


def menu(**values: str) -> dict[str, str]:
    row = {
        "canteen_code": "C1",
        "date": "2026-11-27",
        "slot": "lunch",
        "item_code": "L1",
        "name": "红烧肉套餐",
        "price_cents": "1500",
        "capacity": "100",
    }
    row.update(values)
    return row


async def _canteens(registry: Registry) -> None:
    report = await registry.load(
        "places",
        [
            {"code": "MAIN", "name": "Main", "kind": "campus"},
            {"code": "C1", "name": "Canteen 1", "kind": "canteen", "parent_code": "MAIN"},
            {"code": "C2", "name": "Canteen 2", "kind": "canteen", "parent_code": "MAIN"},
            {"code": "D1", "name": "Dorm 1", "kind": "dorm", "parent_code": "MAIN"},
        ],
    )
    assert report.ok, report.errors


async def test_import_creates_then_updates_then_changes_nothing(registry: Registry) -> None:
    await _canteens(registry)
    rows = [
        menu(),
        menu(item_code="L2", name="Tomato and egg", price_cents="1200"),
        menu(canteen_code="C2"),
        menu(slot="breakfast", item_code="B1", name="Buns", price_cents="500"),
    ]
    report = await registry.load("menus", rows)
    assert report.ok and (report.created, report.updated, report.unchanged) == (4, 0, 0)
    again = await registry.load("menus", rows)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 4)
    rows[0] = menu(price_cents="1600", capacity="120")
    changed = await registry.load("menus", rows)
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 3)
    stored = await registry.all(
        "SELECT item_code, price_cents, capacity, ordered FROM meal_items ORDER BY id"
    )
    assert tuple(stored[0]) == ("L1", 1600, 120, 0)
    assert await registry.count("meal_items") == 4


async def test_every_bad_row_is_reported_and_nothing_is_written(registry: Registry) -> None:
    await _canteens(registry)
    report = await registry.load(
        "menus",
        [
            menu(),  # line 2: fine
            menu(canteen_code="NOPE"),
            menu(canteen_code="D1"),
            menu(date="2026-13-01"),
            menu(date="27/11/2026"),
            menu(slot="supper"),
            menu(price_cents="12.50"),
            menu(price_cents="-100"),
            menu(capacity=""),
            menu(item_code="L 1"),
            menu(name=""),
            menu(),  # line 13: the same item as line 2
        ],
    )
    assert report.errors == [
        "line 3: canteen_code: unknown place 'NOPE'",
        "line 4: canteen_code: 'D1' is a dorm, not a canteen",
        "line 5: date: '2026-13-01' is not a date YYYY-MM-DD",
        "line 6: date: '27/11/2026' is not a date YYYY-MM-DD",
        "line 7: slot: unknown slot 'supper' (one of breakfast, lunch, dinner)",
        "line 8: price_cents: '12.50' is not a whole number of cents",
        "line 9: price_cents: '-100' is not a whole number of cents",
        "line 10: capacity: is empty",
        "line 11: item_code: 'L 1' is not a code (1-64 letters, digits, '_', '.', '-')",
        "line 12: name: is empty",
        "line 13: item 'L1' of C1 2026-11-27 lunch is also on line 2",
    ]
    assert await registry.count("meal_items") == 0


async def test_capacity_below_the_portions_ordered_is_refused(registry: Registry) -> None:
    await _canteens(registry)
    assert (await registry.load("menus", [menu(), menu(item_code="L2")])).ok
    async with registry.engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE meal_items SET ordered = 30 WHERE item_code = 'L1'"))
    report = await registry.load("menus", [menu(capacity="20"), menu(item_code="L2", name="New")])
    assert report.errors == ["line 2: capacity: 20 is below the 30 portions already ordered"]
    stored = await registry.all("SELECT name, capacity FROM meal_items ORDER BY item_code")
    assert [tuple(r) for r in stored] == [("红烧肉套餐", 100), ("红烧肉套餐", 100)]
    assert (await registry.load("menus", [menu(capacity="30")])).ok


async def test_dry_run_and_a_bad_header(registry: Registry) -> None:
    await _canteens(registry)
    report = await registry.load("menus", [menu()], dry_run=True)
    assert report.ok and report.created == 1 and "dry run" in report.summary()
    assert await registry.count("meal_items") == 0
    bad = registry.raw(b"canteen,date,slot,item_code,name,price,capacity\n")
    report = await registry.load("menus", bad)
    assert report.errors[0].startswith("line 1: missing column 'canteen_code', 'price_cents'")


async def test_export_menus_round_trip(registry: Registry) -> None:
    await _canteens(registry)
    rows = [menu(), menu(slot="dinner", item_code="D1", name="Noodles, beef", capacity="5")]
    assert (await registry.load("menus", rows)).ok
    exported = await registry.export("menus")
    assert list(csv.DictReader(io.StringIO(exported)))[1]["name"] == "Noodles, beef"
    path = registry.raw(exported.encode())
    again = await registry.load("menus", path)
    assert again.ok and again.unchanged == 2


def test_cli_import_menus_and_export_orders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHBOT_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", DATA_KEY)
    monkeypatch.chdir(tmp_path)
    places = tmp_path / "places.csv"
    places.write_text("code,name,kind,parent_code,policy\nC1,Canteen 1,canteen,,\n")
    menus = tmp_path / "menus.csv"
    menus.write_text(
        "canteen_code,date,slot,item_code,name,price_cents,capacity\n"
        "C1,2026-11-27,lunch,L1,Rice,1500,10\n"
        "C1,2026-11-27,lunch,L1,Rice,1500,10\n"
    )
    runner = CliRunner()
    assert runner.invoke(main, ["import", "places", str(places)]).exit_code == 0
    result = runner.invoke(main, ["import", "menus", str(menus)])
    assert result.exit_code == 1
    assert "line 3: item 'L1' of C1 2026-11-27 lunch is also on line 2" in result.output
    menus.write_text(menus.read_text().rsplit("C1,", 1)[0])
    result = runner.invoke(main, ["import", "menus", str(menus), "--dry-run"])
    assert "menus: 1 row, 1 created, 0 updated, 0 unchanged (dry run" in result.output
    result = runner.invoke(main, ["import", "menus", str(menus)])
    assert result.exit_code == 0 and "1 created" in result.output

    result = runner.invoke(main, ["export", "orders", "--date", "2026-11-27"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("order_id,date,slot,canteen_code,item_code")
    out = tmp_path / "orders.csv"
    result = runner.invoke(
        main, ["export", "orders", "--date", "2026-11-27", "--canteen", "C1", "-o", str(out)]
    )
    assert result.exit_code == 0 and out.read_text().count("\n") == 1
    result = runner.invoke(main, ["export", "orders", "--date", "2026-11-27", "--canteen", "X"])
    assert result.exit_code == 1 and "no canteen with code 'X'" in result.output
    result = runner.invoke(main, ["export", "orders"])
    assert result.exit_code == 2 and "--date" in result.output
    result = runner.invoke(main, ["export", "orders", "--date", "27.11.2026"])
    assert result.exit_code == 2
    result = runner.invoke(main, ["export", "units", "--date", "2026-11-27"])
    assert result.exit_code == 2
    result = runner.invoke(main, ["export", "menus"])
    assert result.exit_code == 0 and "C1,2026-11-27,lunch,L1,Rice,1500,10" in result.output


async def test_hostile_numbers_dates_and_files(registry: Registry) -> None:
    await _canteens(registry)
    report = await registry.load(
        "menus",
        [
            menu(price_cents="１５００"),  # full-width digits: not a number of the format
            menu(item_code="L2", capacity="١٠٠"),  # Arabic-Indic digits
            menu(item_code="L3", date="２０２６-１１-２７"),
            menu(item_code="L4", price_cents="10000001"),
            menu(item_code="L5", capacity="100001"),
            menu(item_code="L6", capacity="99999999999999999999"),
            menu(item_code="L7", price_cents="1e3"),
            menu(item_code="L8", date="2026-11-27T12:00"),
            menu(item_code="L9", name="'); DROP TABLE meal_items;--"),  # a name, stored as is
        ],
    )
    assert report.errors == [
        "line 2: price_cents: '１５００' is not a whole number of cents",
        "line 3: capacity: '١٠٠' is not a whole number of portions",
        "line 4: date: '２０２６-１１-２７' is not a date YYYY-MM-DD",
        "line 5: price_cents: 10000001 is more than 10000000 cents",
        "line 6: capacity: 100001 is more than 100000 portions",
        "line 7: capacity: '99999999999999999999' is not a whole number of portions",
        "line 8: price_cents: '1e3' is not a whole number of cents",
        "line 9: date: '2026-11-27T12:00' is not a date YYYY-MM-DD",
    ]
    assert await registry.count("meal_items") == 0
    # A BOM is fine; a file that is not UTF-8 is refused with its line, nothing written.
    header = ",".join(COLUMNS) + "\n"
    good = registry.raw(b"\xef\xbb\xbf" + (header + "C1,2026-11-27,lunch,L1,Rice,0,0\n").encode())
    assert (await registry.load("menus", good)).ok
    bad = registry.raw((header + "C1,2026-11-27,lunch,L2,米饭,100,1\n").encode("gb18030"))
    report = await registry.load("menus", bad)
    assert not report.ok and report.errors[0].startswith("line 2")
    assert await registry.count("meal_items") == 1
