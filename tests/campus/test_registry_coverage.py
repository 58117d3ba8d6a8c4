"""Registry coverage (`healthbot stats registry`) against the demo campus."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from bot.cli import main
from bot.settings import Settings
from campus.registry import coverage
from campus.registry.importer import run_import
from storage.engine import create_engine, session_factory
from storage.models import Person, Place, WeChatAccount


async def test_coverage_of_the_demo_campus(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/c.db"
    settings = Settings(_env_file=None, database_url=url, data_key="k")  # type: ignore[call-arg]
    folder = resources.files("bot") / "demo_seed"
    for kind in ("units", "places", "persons"):
        with resources.as_file(folder / f"{kind}.csv") as path:
            assert not (await run_import(settings, kind, path, dry_run=False)).errors
    engine = create_engine(url)
    sessions = session_factory(engine)
    async with sessions.begin() as s:
        # An empty house, and two residents bound to WeChat.
        grid_id = (await s.execute(select(Place.id).where(Place.code == "GRID-1"))).scalar_one()
        s.add(Place(code="HOUSE-999", name="Empty", kind="house", parent_id=grid_id))
        for no, openid in (("R001", "o_r1"), ("F002", "o_f2")):
            pid = (await s.execute(select(Person.id).where(Person.person_no == no))).scalar_one()
            s.add(WeChatAccount(openid=openid, person_id=pid))
    grids = await coverage.grid_coverage(sessions)
    units = {u.code: u for u in await coverage.unit_coverage(sessions)}
    await engine.dispose()

    (grid,) = grids
    assert (grid.code, grid.houses, grid.houses_registered) == ("GRID-1", 4, 3)
    assert (grid.residents, grid.residents_bound) == (7, 2)
    assert (units["COMM"].persons, units["COMM"].bound) == (5, 1)  # R001 bound
    assert (units["CS-2101"].persons, units["CS-2101"].bound) == (6, 0)
    text = coverage.render(grids, list(units.values()))
    assert "houses 3/4 (75%)" in text


def test_stats_registry_on_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    runner = CliRunner()
    env = {"HEALTHBOT_DATABASE_URL": url, "HEALTHBOT_DATA_KEY": "k"}
    places = tmp_path / "places.csv"
    places.write_text(
        "code,name,kind,parent_code,policy\nG,Grid,grid,,open\nH1,House,house,G,open\n",
        encoding="utf-8",
    )
    assert runner.invoke(main, ["import", "places", str(places)], env=env).exit_code == 0
    result = runner.invoke(main, ["stats", "registry"], env=env)
    assert result.exit_code == 0, result.output
    assert "houses 0/1 (0%)" in result.output
