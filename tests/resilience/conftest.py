"""A campus on real processes: `healthbot serve` / `healthbot scheduler` workers, an emulated
WeChat, a fresh PostgreSQL database, Redis (shared or private), and fault proxies.

Everything here runs outside the test's event loop: workers are subprocesses, the emulated
WeChat and the proxies run on loops of their own in threads. A test talks to the workers over
HTTP, like WeChat's servers, and breaks things through the proxies or by killing processes.
Nothing here restarts or flushes the shared PostgreSQL or Redis: each campus gets its own
database and its own AppId (every Redis key the bot writes starts with `hc:<appid>:`).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import redis
import xmltodict
import yaml
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.wechat.security import sign
from campus.secrets import DataVault
from simulator import SimulatorConfig, create_simulator_app
from simulator.keys import STATE
from simulator.state import SimulatorState
from storage.engine import session_factory
from storage.migrate import upgrade
from storage.models import Person, Unit, WeChatAccount
from tests.conftest import IN_CI, _admin_sql
from tests.resilience.proxy import LoopThread, free_port
from tests.support import ACCOUNT, DATA_KEY, TOKEN, resident_id, seed_campus

ROOT = Path(__file__).resolve().parents[2]
SECRET = "resilience-secret"
TRACEBACK = re.compile(r"^Traceback \(most recent call last\)", re.M)
CUSTOM = "/cgi-bin/message/custom/send"
TOKEN_PATHS = ("/cgi-bin/stable_token", "/cgi-bin/token")


def rules_file(directory: Path, schedule: dict[str, str] | None = None) -> Path:
    """The shipped rules without quiet hours (pushes go at once, whatever the hour of the run)
    and with the given cron schedule only (none: no cron job at all)."""
    doc = yaml.safe_load((ROOT / "campus" / "rules.yaml").read_text(encoding="utf-8"))
    doc["quiet_hours"] = {"enabled": False}
    doc["schedule"] = dict(schedule or {})
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


# -- the emulated WeChat -------------------------------------------------------------------------


class EmulatedWeChat:
    """The simulator's API on a port of its own, in a thread, for one AppId."""

    def __init__(self, appid: str) -> None:
        self.appid = appid
        self.port = free_port()
        self.thread = LoopThread("emulated-wechat")
        app = create_simulator_app(
            SimulatorConfig(
                token=TOKEN,
                appid=appid,
                secret=SECRET,
                aes_key=None,
                callback_url="http://127.0.0.1:9/wechat",  # template reports: nowhere
                personas_url=None,
            )
        )
        self.state: SimulatorState = app[STATE]
        parent = web.Application()
        parent.add_subapp("/sim/", app)
        self.runner = web.AppRunner(parent, handle_signals=False)
        self.thread.call(self._start)

    async def _start(self) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/sim/api"

    def follow(self, *openids: str) -> None:
        """Users who follow the account and wrote to it just now (pushes may go to them)."""

        async def add() -> None:
            for openid in openids:
                user = self.state.users.add(openid, following=True)
                user.window.on_message(self.state.clock.time())

        self.thread.call(add)

    def calls(self, *paths: str) -> int:
        return sum(self.state.calls.get(p, 0) for p in paths)

    def all_calls(self) -> int:
        return sum(self.state.calls.values())

    def pushes(self, openid: str) -> list[str]:
        """The texts of the pushes the user got (custom and template messages)."""
        return [
            str(getattr(e.message, "text", "") or "")
            for e in self.state.log.entries(openid)
            if e.message.via in ("custom", "template")
        ]

    def control(self, **body: Any) -> dict[str, Any]:
        """`POST /sim/api/_control`, as a benchmark or an operator would."""

        async def post() -> dict[str, Any]:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{self.api_base}/_control", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    return dict(await resp.json())

        return self.thread.call(post)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.thread.call(self.runner.cleanup)
        self.thread.close()


# -- the campus database -------------------------------------------------------------------------


@dataclass
class Campus:
    """A fresh database with S001, S002, T001 (tests/support.py) and `extra` students."""

    url: str
    persons: dict[str, int] = field(default_factory=dict)

    def run(self, work: Callable[[Any], Any]) -> Any:
        """Run `await work(sessions)` against the database, from any context."""

        async def go() -> Any:
            engine = create_async_engine(self.url, poolclass=NullPool)
            try:
                return await work(session_factory(engine))
            finally:
                await engine.dispose()

        thread = LoopThread("campus-db")
        try:
            return thread.call(go, timeout=60)
        finally:
            thread.close()

    def count(self, model: Any, *where: Any) -> int:
        async def go(sessions: Any) -> int:
            async with sessions() as s:
                return int(await s.scalar(select(func.count()).select_from(model).where(*where)))

        return int(self.run(go))

    def bind(self, openid: str, person_no: str) -> None:
        async def go(sessions: Any) -> None:
            now = datetime.now(UTC)
            async with sessions.begin() as s:
                s.add(
                    WeChatAccount(
                        openid=openid,
                        person_id=self.persons[person_no],
                        bound_at=now,
                        last_seen_at=now,
                    )
                )

        self.run(go)


def student_no(i: int) -> str:
    return f"R{i:05d}"


def student_id(i: int) -> str:
    return resident_id(f"3301062001{i % 100:02d}{i:05d}"[:17])


def make_campus(server_url: str, extra: int = 0) -> Iterator[Campus]:
    name = f"hb_resilience_{secrets.token_hex(5)}"
    _admin_sql(server_url, f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    campus = Campus(url)

    async def prepare(sessions: Any) -> dict[str, int]:
        engine = sessions.kw["bind"]
        await upgrade(engine)
        vault = DataVault.from_setting(DATA_KEY)
        await seed_campus(sessions, vault)
        async with sessions.begin() as s:
            unit = await s.scalar(select(Unit).where(Unit.code == "CS"))
            assert unit is not None
            for i in range(extra):
                number = student_id(i)
                s.add(
                    Person(
                        person_no=student_no(i),
                        name=f"Student {i}",
                        category="student",
                        unit_id=unit.id,
                        id_hash=vault.lookup_hash(number, "id"),
                        id_cipher=vault.encrypt(number),
                        locale="en",
                    )
                )
        async with sessions() as s:
            return {no: pid for no, pid in await s.execute(select(Person.person_no, Person.id))}

    try:
        campus.persons = campus.run(prepare)
        yield campus
    finally:
        _admin_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- worker processes ----------------------------------------------------------------------------


class Process:
    """One `healthbot …` subprocess with its log in a file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=logs,  # no stray .env file from the checkout
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_log(self, pattern: str, timeout: float = 30, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            text = self.log()[after:]
            if regex.search(text):
                return text
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: no {pattern!r} in {timeout} s:\n{self.log()[-3000:]}")

    def kill(self) -> None:
        """kill -9: no clean-up, no lock released, connections left hanging."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class Worker(Process):
    """`healthbot serve --no-scheduler` on a free port."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        super().__init__(
            name, [*HEALTHBOT, "serve", "--port", str(self.port), "--no-scheduler"], env, logs
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        import urllib.error
        import urllib.request

        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready in {timeout} s:\n{self.log()[-3000:]}")


HEALTHBOT = ["-c", "from bot.cli import main; main()"]
FAST_CRON = ["-m", "tests.resilience.fastcron"]


def worker_env(
    *,
    appid: str,
    database_url: str,
    redis_url: str,
    api_base: str,
    rules: Path,
    **settings: object,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOT_") and k != "CI"}
    env.update(
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        HEALTHBOT_WECHAT_TOKEN=TOKEN,
        HEALTHBOT_WECHAT_APPID=appid,
        HEALTHBOT_WECHAT_SECRET=SECRET,
        HEALTHBOT_DATA_KEY=DATA_KEY,
        HEALTHBOT_DATABASE_URL=database_url,
        HEALTHBOT_REDIS_URL=redis_url,
        HEALTHBOT_WECHAT_API_BASE=api_base,
        HEALTHBOT_RULES_FILE=str(rules),
        HEALTHBOT_DEFAULT_LOCALE="en",
    )
    for name, value in settings.items():
        env[f"HEALTHBOT_{name.upper()}"] = str(value)
    return env


def new_appid() -> str:
    return "wx" + secrets.token_hex(8)


def forget_keys(redis_url: str, appid: str) -> None:
    """Delete what the bot wrote for this AppId in the shared Redis (never a FLUSHDB)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"hc:{appid}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


# -- a private Redis -----------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of our own on a free port, to kill and restart (no persistence)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            message = "redis-server is not installed"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.binary = binary
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.kill()


# -- WeChat's side of the callback ---------------------------------------------------------------


class Phone:
    """Sends signed callbacks to a worker, as WeChat's servers do, and reads the replies."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self._ids = iter(range(int(time.time() * 1000) * 1000, 1 << 62))

    def new_msg_id(self) -> int:
        return next(self._ids)

    @staticmethod
    def params() -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
        return {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": sign(TOKEN, timestamp, nonce),
            "openid": "ignored",
        }

    async def post(self, url: str, body: bytes | str) -> tuple[int, str]:
        data = body.encode() if isinstance(body, str) else body
        async with self.http.post(f"{url}/wechat", params=self.params(), data=data) as resp:
            return resp.status, await resp.text()

    async def say(self, url: str, openid: str, content: str, msg_id: int | None = None) -> str:
        """The reply's text ('' for `success`); fails on anything but a 200."""
        xml = xmltodict.unparse(
            {
                "xml": {
                    "ToUserName": ACCOUNT,
                    "FromUserName": openid,
                    "CreateTime": str(int(time.time())),
                    "MsgType": "text",
                    "Content": content,
                    "MsgId": str(msg_id if msg_id is not None else self.new_msg_id()),
                }
            },
            full_document=False,
        )
        status, body = await self.post(url, xml)
        assert status == 200, (status, body)
        return reply_text(body)


def reply_text(body: str) -> str:
    if body == "success" or not body:
        return ""
    doc = xmltodict.parse(body)["xml"]
    return str(doc.get("Content") or doc.get("MsgType") or "")


def tracebacks(*processes: Process) -> list[str]:
    """Tracebacks in the logs, with the lines before them (empty: nothing escaped)."""
    found = []
    for p in processes:
        text = p.log()
        for m in TRACEBACK.finditer(text):
            found.append(f"{p.name}: {text[max(0, m.start() - 300) : m.start() + 1500]}")
    return found


@pytest.fixture
async def phone() -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        yield Phone(http)
