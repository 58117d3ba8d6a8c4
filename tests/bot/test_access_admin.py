"""The operator's access commands: menu sync with the guards' menu, keys rotate/export/list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from click.testing import CliRunner

from bot.access_admin import MenuSync, sync_menu
from bot.cli import main
from bot.guardtags import GUARD_TAG
from bot.menu import default_menu, guard_menu, validate
from bot.settings import Settings
from campus.secrets import DataVault
from simulator import SimulatorConfig, create_simulator_app
from simulator.keys import STATE
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import Person, WeChatAccount
from tests.access_support import seed_places
from tests.support import DATA_KEY, seed_campus

APPID, SECRET = "wxadmin000000001", "admin-secret"


def test_the_guard_menu_puts_the_scanner_one_tap_away() -> None:
    menu = guard_menu(105)
    validate(menu)
    assert menu["matchrule"] == {"tag_id": "105"}
    top = menu["button"]
    assert {"type": "scancode_waitmsg", "name": "扫码核验", "key": "VERIFY"} in top
    keys = {leaf.get("key") for b in top for leaf in (b.get("sub_button") or [b])}
    defaults = {
        leaf.get("key") for b in default_menu()["button"] for leaf in (b.get("sub_button") or [b])
    }
    assert keys == defaults | {"VERIFY"}  # nothing of the default menu is lost


async def test_menu_sync_tags_bound_guards_and_keeps_one_guard_menu(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    sim = create_simulator_app(
        SimulatorConfig(
            token="t",
            appid=APPID,
            secret=SECRET,
            aes_key=None,
            callback_url="http://127.0.0.1:9/wechat",
            personas_url=None,
        )
    )
    parent = web.Application()
    parent.add_subapp("/sim/", sim)
    server = await aiohttp_server(parent)
    state = sim[STATE]
    for openid in ("o_guard", "o_student"):
        state.users.add(openid, following=True)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{tmp_path}/admin.db",
        wechat_appid=APPID,
        wechat_secret=SECRET,
        wechat_api_base=str(server.make_url("/sim/api")),
        data_key=DATA_KEY,
    )
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    sessions = session_factory(engine)
    vault = DataVault.from_setting(DATA_KEY)
    await seed_campus(sessions, vault)
    await seed_places(sessions, vault)
    async with sessions.begin() as s:
        from sqlalchemy import select

        ids = dict((await s.execute(select(Person.person_no, Person.id))).all())
        s.add(WeChatAccount(openid="o_guard", person_id=ids["G001"]))
        s.add(WeChatAccount(openid="o_student", person_id=ids["S001"]))
    await engine.dispose()

    assert await sync_menu(settings) == MenuSync(tagged=1, untagged=0)
    assert await sync_menu(settings) == MenuSync(1, 0)  # again: still one guard menu, same tag
    (tag,) = [t for t in state.tags.all() if t.name == GUARD_TAG]
    assert [m.matchrule for m in state.menus.conditionals] == [{"tag_id": str(tag.id)}]
    guard, student = state.users.get("o_guard"), state.users.get("o_student")
    assert guard is not None and student is not None
    guard_view = state.menus.for_user(guard.tags, guard.language)
    student_view = state.menus.for_user(student.tags, student.language)
    assert guard_view is not None and guard_view["conditional"]
    assert student_view is not None and not student_view["conditional"]

    # The guard loses the role: the next sync takes the tag, and with it the scanner, away.
    engine = create_engine(settings.database_url)
    async with session_factory(engine).begin() as s:
        from sqlalchemy import update

        await s.execute(update(Person).where(Person.id == ids["G001"]).values(roles=""))
    await engine.dispose()
    assert await sync_menu(settings) == MenuSync(tagged=0, untagged=1)
    assert tag.id not in guard.tags
    after = state.menus.for_user(guard.tags, guard.language)
    assert after is not None and not after["conditional"]


def test_keys_rotate_export_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    env = {
        "HEALTHBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/keys.db",
        "HEALTHBOT_DATA_KEY": DATA_KEY,
        "HEALTHBOT_WECHAT_APPID": APPID,
    }
    runner = CliRunner()
    first = runner.invoke(main, ["keys", "export"], env=env)
    assert first.exit_code == 0, first.output
    jwks = json.loads(first.output)
    assert jwks["campus"] == APPID and len(jwks["keys"]) == 1
    rotated = runner.invoke(main, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert "new signing key" in rotated.output and "verifies codes until" in rotated.output
    out = tmp_path / "jwks.json"
    assert runner.invoke(main, ["keys", "export", "-o", str(out)], env=env).exit_code == 0
    keys = json.loads(out.read_text())["keys"]
    assert len(keys) == 2 and sum("verify_until" in k for k in keys) == 1
    listed = runner.invoke(main, ["keys", "list"], env=env)
    assert listed.exit_code == 0 and len(listed.output.strip().splitlines()) == 2


def test_poster_for_an_unknown_place_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"HEALTHBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"}
    result = CliRunner().invoke(main, ["poster", "NOPE", "-o", str(tmp_path / "x.png")], env=env)
    assert result.exit_code == 1
    assert "no place with code 'NOPE'" in result.output
    assert not (tmp_path / "x.png").exists()
