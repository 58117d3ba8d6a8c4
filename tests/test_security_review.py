"""Tests for the points of docs/security.md that no feature's own tests proved yet.

Insecure defaults refused by `serve`, role commands refused to everyone without the role
(over every role command in COMMANDS, so a new one is covered when it is added), data-key
rotation as docs/deploy.md describes it, SQL parameters kept out of errors, quiet loggers.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from bot import appkeys as K
from bot.app import create_app
from bot.clock import FrozenClock
from bot.settings import Settings
from campus.secrets import CannotDecrypt, DataVault
from handlers import COMMANDS
from handlers.commands import Command
from storage.engine import create_engine
from storage.models import Base
from tests.bot.conftest import bot_settings
from tests.health_support import PERSONS, START, seed
from tests.health_support import id_tail as campus_id_tail
from tests.support import DATA_KEY, AppServer, FakeWeChatAPI, WeChat, id_tail, seed_campus

# --- `serve` refuses the demo's secrets ------------------------------------------------------

SECRETS = {
    "HEALTHBOT_WECHAT_TOKEN": "a-real-token-0123",
    "HEALTHBOT_WECHAT_APPID": "wx1234567890abcdef",
    "HEALTHBOT_WECHAT_SECRET": "a-real-secret",
    "HEALTHBOT_DATA_KEY": "a-real-data-key",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No HEALTHBOT_ variable and no .env file: the settings' own defaults."""
    import os

    for name in list(os.environ):
        if name.startswith("HEALTHBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch


@pytest.mark.parametrize("left_default", sorted(SECRETS))
def test_serve_refuses_to_start_with_a_demo_default(
    clean_env: pytest.MonkeyPatch, left_default: str
) -> None:
    from bot.cli import main

    for name, value in SECRETS.items():
        if name != left_default:
            clean_env.setenv(name, value)
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code != 0
    assert "refusing to serve with demo defaults" in result.output
    assert f"{left_default} is still the default" in result.output
    for name in SECRETS:
        if name != left_default:
            assert name not in result.output


def test_serve_keeps_handlers_running_when_wechat_hangs_up(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A late answer is handled on its request's task after WeChat got `success` and hung
    up (bot/wechat/callback.py): aiohttp must not cancel handlers on a lost connection."""
    from aiohttp import web

    from bot.cli import main

    for name, value in SECRETS.items():
        clean_env.setenv(name, value)
    clean_env.setenv("HEALTHBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/serve.db")
    served: dict[str, Any] = {}
    clean_env.setattr(web, "run_app", lambda app, **kwargs: served.update(kwargs))
    result = CliRunner().invoke(main, ["serve", "--port", "18999", "--no-scheduler"])
    assert result.exit_code == 0, result.output
    assert served.pop("handler_cancellation") is False
    result = CliRunner().invoke(main, ["demo", "--port", "18999", "--data", str(tmp_path / "d")])
    assert result.exit_code == 0, result.output
    assert served["handler_cancellation"] is False


def test_production_settings_have_no_problems_and_insecure_needs_saying_so(
    clean_env: pytest.MonkeyPatch,
) -> None:
    assert len(Settings(_env_file=None).production_problems()) == 4  # type: ignore[call-arg]
    for name, value in SECRETS.items():
        clean_env.setenv(name, value)
    assert Settings(_env_file=None).production_problems() == []  # type: ignore[call-arg]
    assert Settings(_env_file=None).allow_insecure_defaults is False  # type: ignore[call-arg]


def test_replies_must_be_kept_as_long_as_a_replay_is_accepted(
    clean_env: pytest.MonkeyPatch,
) -> None:
    """A request captured in transit is accepted again until its timestamp is
    TIMESTAMP_TOLERANCE old: a stored reply kept for less would let the replay run anew."""
    import click

    from bot.cli import _settings

    clean_env.setenv("HEALTHBOT_TIMESTAMP_TOLERANCE", "600")
    with pytest.raises(click.ClickException) as refused:  # every command's settings
        _settings()
    assert refused.value.message == (
        "bad settings: DEDUP_TTL (300 s) must be at least TIMESTAMP_TOLERANCE (600 s): "
        "a replayed request would be processed again"
    )
    clean_env.setenv("HEALTHBOT_DEDUP_TTL", "600")
    assert Settings(_env_file=None).dedup_ttl == 600  # type: ignore[call-arg]


# --- roles on every command -----------------------------------------------------------------

ROLE_COMMANDS = [c for c in COMMANDS if c.roles]
# Plausible arguments per command word, so a missing role check would have something
# to act on: a real unit, a real person, a registration or application number.
ARGS = {
    "通知": "CS-2101 全体注意",
    "设置状态": "S002 red 密接",
    "上岗": "GATE-N",
    "同意登记": "1",
    "驳回登记": "1",
    "同意": "A1",
    "驳回": "A1 不符合条件",
    "追踪": "S002",
    "事件": "S002",
}
NAMES = {no: name for no, name, *_ in PERSONS}
ROLES = {no: frozenset(r for r in roles.split(";") if r) for no, _n, _c, _u, roles, *_ in PERSONS}
# Tables a refused command may still touch: who was seen when, and the audit trail itself.
MAY_CHANGE = {"wechat_accounts", "audit_log"}


@pytest.fixture
async def campus_bot(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> AsyncIterator[WeChat]:
    fake = FakeWeChatAPI()
    server = await aiohttp_server(fake.app())
    clock = FrozenClock(START.timestamp())
    settings = bot_settings(tmp_path, str(server.make_url("")).rstrip("/"))
    app = create_app(settings, clock=clock)
    client = await aiohttp_client(AppServer(app))
    await seed(app[K.SESSIONS], START - timedelta(days=30))
    yield WeChat(client, now=clock.time)


async def snapshot(wechat: WeChat) -> dict[str, list[str]]:
    out = {}
    async with wechat.client.app[K.SESSIONS]() as session:
        for table in Base.metadata.sorted_tables:
            if table.name in MAY_CHANGE:
                continue
            rows = (await session.execute(select(table))).all()
            out[table.name] = sorted(repr(tuple(r)) for r in rows)
    return out


def command_id(command: Command) -> str:
    return command.keyword.en


@pytest.mark.parametrize("command", ROLE_COMMANDS, ids=command_id)
async def test_a_role_command_refuses_everyone_without_the_role(
    campus_bot: WeChat, command: Command
) -> None:
    wechat = campus_bot
    askers: dict[str, str | None] = {"o_unbound": None}
    for person_no, roles in ROLES.items():
        if not roles & command.roles and person_no in ("S001", "G001", "F001", "H001", "A001"):
            askers[f"o_{person_no.lower()}"] = person_no
    for openid, asker in askers.items():
        if asker is not None:
            bound = await wechat.say(openid, f"绑定 {asker} {campus_id_tail(asker)}")
            assert "绑定成功" in bound, bound
    before = await snapshot(wechat)
    for openid, no in askers.items():
        for word in command.keyword.words:
            message = f"{word} {ARGS.get(command.keyword.zh, '')}".strip()
            reply = await wechat.say(openid, message)
            assert reply, f"{message!r} from {no}: no answer"
            others = [name for n, name in NAMES.items() if n != no]
            assert not [n for n in others if n in reply], f"{message!r} from {no}: {reply}"
            assert "http" not in reply, f"{message!r} from {no} got a link: {reply}"
    assert await snapshot(wechat) == before, f"{command.keyword.en} changed data without the role"


async def test_the_same_commands_from_the_role_holders_do_change_data(campus_bot: WeChat) -> None:
    """The control for the test above: its snapshot sees what a permitted command writes."""
    wechat = campus_bot
    for openid, no in (("o_h001", "H001"), ("o_f001", "F001")):
        assert "绑定成功" in await wechat.say(openid, f"绑定 {no} {campus_id_tail(no)}")
    before = await snapshot(wechat)
    assert "红码" in await wechat.say("o_h001", f"设置状态 {ARGS['设置状态']}")
    after_status = await snapshot(wechat)
    assert after_status != before
    await wechat.say("o_f001", f"通知 {ARGS['通知']}")
    assert await snapshot(wechat) != after_status


def test_every_role_command_is_hidden_from_help_without_the_role() -> None:
    """帮助 lists a role command only to its roles (tests/bot/*::test_help_* check the text)."""
    from campus.accounts import Principal

    student = Principal(
        openid="o",
        locale="zh_CN",
        person_id=1,
        person_no="S001",
        name="x",
        category="student",
        roles=frozenset(),
        unit_id=1,
        state="active",
    )
    assert ROLE_COMMANDS
    for command in ROLE_COMMANDS:
        assert command.bound is True, command.keyword.en  # no role command before binding
        assert not command.visible_to(student), command.keyword.en


# --- the data key and its rotation ----------------------------------------------------------


def test_a_rotated_data_key_reads_old_data_and_keeps_the_lookup_hashes() -> None:
    old, new = "old-data-key", "new-data-key"
    before = DataVault.from_setting(old)
    after = DataVault.from_setting(f"{new},{old}")
    stored = before.encrypt("110105200001011234")
    assert after.decrypt(stored) == "110105200001011234"
    assert after.lookup_hash("S001", "person_no") == before.lookup_hash("S001", "person_no")
    fresh = after.encrypt("13800001234")
    with pytest.raises(CannotDecrypt):
        before.decrypt(fresh)  # new data is under the new key
    with pytest.raises(CannotDecrypt):
        DataVault.from_setting(new).decrypt(stored)  # dropping the old key loses old data
    # The order matters: the new key goes first. Appended, it would change every lookup hash.
    wrong = DataVault.from_setting(f"{old},{new}")
    assert wrong.lookup_hash("S001", "person_no") != before.lookup_hash("S001", "person_no")


async def test_binding_works_across_a_data_key_rotation(
    tmp_path: Path, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    fake = FakeWeChatAPI()
    server = await aiohttp_server(fake.app())
    api = str(server.make_url("")).rstrip("/")
    first = create_app(bot_settings(tmp_path, api))
    client = await aiohttp_client(AppServer(first))
    await seed_campus(first[K.SESSIONS], DataVault.from_setting(DATA_KEY))
    await client.close()
    rotated = create_app(bot_settings(tmp_path, api, data_key=f"rotated-key,{DATA_KEY}"))
    wechat = WeChat(await aiohttp_client(AppServer(rotated)))
    assert "绑定成功" in await wechat.say("o_s1", f"绑定 S001 {id_tail('S001')}")
    assert "绑定成功" not in await wechat.say("o_s2", "绑定 S002 000000")
    reply = await wechat.say("o_s2", f"绑定 S002 {id_tail('S002')}")
    assert "绑定成功" in reply


# --- personal data out of errors and logs ---------------------------------------------------

# Built at run time, so that a traceback's source lines cannot show it either.
PRIVATE = "".join(["张三丰 ", "o_", "secret"])


async def test_sql_parameters_stay_out_of_errors_on_sqlite(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/t.db")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT UNIQUE)"))
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                for _ in range(2):
                    await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": PRIVATE})
        logged = "".join(traceback.format_exception(caught.value))
        assert PRIVATE not in logged and "o_secret" not in logged
        assert "parameters hidden" in logged
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_sql_values_stay_out_of_logged_tracebacks_on_postgresql(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (x TEXT UNIQUE)"))
        with pytest.raises(IntegrityError) as caught:
            async with engine.begin() as conn:
                for _ in range(2):
                    await conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": PRIVATE})
        assert "o_secret" not in str(caught.value)  # holds: parameters are hidden
        assert "o_secret" not in "".join(traceback.format_exception(caught.value))  # DETAIL
    finally:
        await engine.dispose()


def test_the_loggers_that_would_carry_personal_data_are_kept_quiet(
    tmp_path: Path,
) -> None:
    from bot.cli import _logging

    names = ("aiohttp.access", "alembic", "aiosqlite")
    saved = {name: logging.getLogger(name).level for name in names}
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    try:
        _logging(verbose=True)  # even at DEBUG
        # The access log's query strings carry openids and signed-link tokens.
        assert logging.getLogger("aiohttp.access").getEffectiveLevel() >= logging.WARNING
        create_app(bot_settings(tmp_path, "http://127.0.0.1:9"))
        # aiosqlite logs every statement with its parameters at DEBUG.
        assert logging.getLogger("aiosqlite").getEffectiveLevel() >= logging.INFO
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        root.setLevel(root_level)
        root.handlers[:] = root_handlers
