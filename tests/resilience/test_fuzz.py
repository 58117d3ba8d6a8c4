"""Hostile input: random texts through every conversation step, random bytes and random XML
through the callback. Never a 500, never an escaped exception, never a corrupted state.

The steps come from `handlers.build_router()`: every state-bound route is fuzzed, so a step a
new feature adds is covered without touching this file. Realistic data for each step is found
by walking the conversations from their keywords, answering with the options the bot offers
and a few plausible answers; a step the walk does not reach is fuzzed with empty data (what a
step sees when its data was lost).
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import xmltodict
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from bot import appkeys as K
from bot.app import create_app
from bot.dispatch.state import Conversation, StateStore
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from bot.settings import Settings
from bot.wechat.security import sign
from handlers import build_router
from storage.models import Person, WeChatAccount
from tests.resilience.conftest import SECRET, EmulatedWeChat
from tests.support import ACCOUNT, AES_KEY, DATA_KEY, TOKEN, AppServer, id_tail, seed_campus

pytestmark = [pytest.mark.postgres]

FUZZ = settings(
    max_examples=1500,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
ALL_ROLES = "guard;responsible;health_officer;canteen;admin"
OPTION = re.compile(r"msgmenucontent=([^&\"]*)&")
PLAUSIBLE = [
    "36.5",
    "38.2",
    "35",
    "none",
    "done",
    "campus",
    "city",
    "elsewhere",
    "Shanghai",
    "neither",
    "both",
    "yes",
    "no",
    "1",
    "2",
    "3",
    "7",
    "S002",
    "T001",
    id_tail("S002"),
    "张三",
    "student",
    "staff",
    "13800138000",
    "110105200001011234",
    "confirm",
    "确认",
    "ok",
]
NASTY = [
    "'; DROP TABLE persons; --",
    "1 OR 1=1",
    '" OR ""="',
    "<script>alert(1)</script>",
    "]]></Content><MsgType>event</MsgType>",
    "<![CDATA[x]]>",
    "&amp;&lt;&#0;",
    "%s%s%n%x",
    "{name}",
    "{0}{1}",
    "{__class__}",
    "${jndi:ldap://x/a}",
    "../../etc/passwd",
    "null",
    "None",
    "NaN",
    "-inf",
    "1e309",
    "-0",
    "0x1F",
    "36,5",
    "３６．５",
    "٣٦٫٥",
    "𝟑𝟔.𝟓",
    "36.5℃",
    "\u202e5.63",
    "\u200b",
    "\ufeff打卡",
    "🤒🤒🤒",
    "👨‍👩‍👧‍👦" * 50,
    "a" * 5000,
    "9" * 400,
    "-" + "9" * 40,
    "S" + "0" * 70,
    "绑定 S001 " + "1" * 200,
    "取消",
    "cancel",
    "help",
    "打卡 99999999999999999999",
    "checkin -273.15",
    "1/0",
    "\t\n\r ",
]
EMOJI = ["🤒", "😷", "💉", "🏥", "🌡️", "✅", "❌", "🇨🇳", "👨‍⚕️", "\U0001fae0"]
# Characters WeChat can carry in XML (no C0 controls but tab, LF, CR; no surrogates).
XML_TEXT = st.text(
    alphabet=st.characters(
        blacklist_categories=cast(Any, ["Cs"]),
        blacklist_characters=[chr(c) for c in range(32) if c not in (9, 10, 13)]
        + ["\ufffe", "\uffff"],
    ),
    max_size=300,
)
TEXTS = st.one_of(
    XML_TEXT,
    st.sampled_from(NASTY),
    st.sampled_from(PLAUSIBLE),
    st.integers(-(10**60), 10**60).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.tuples(st.sampled_from(NASTY + PLAUSIBLE), XML_TEXT).map(" ".join),
    st.lists(st.sampled_from(["🤒", "😷", "💉", "🏥", "🌡️", "✅", "❌", "🇨🇳"]), max_size=40).map(
        "".join
    ),
)


@dataclass
class Found:
    """A conversation step and what the walk saw in it."""

    data: dict[str, Any]
    bound: bool


class Errors(logging.Handler):
    """Every ERROR log record and every record with a traceback: an escaped exception."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            self.records.append(self.format(record))


@dataclass
class Bot:
    loop: asyncio.AbstractEventLoop
    client: TestClient[Any, Any]
    kv: MemoryKV
    keys: Keyspace
    step_names: set[str]
    step_prefixes: set[str]
    errors: Errors
    bound_openid: str = "o_fuzz_bound"
    counter: Iterator[int] = field(default_factory=lambda: iter(range(10**12, 10**13)))

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def openid(self, bound: bool) -> str:
        """The bound user (bound again if a fuzzed `unbind` confirmed), or a new stranger."""
        if bound:
            self.run(_bind(self.client.app, self.bound_openid))
            return self.bound_openid
        return f"o_fuzz_{next(self.counter)}"

    def known_step(self, step: str) -> bool:
        return step in self.step_names or any(step.startswith(p) for p in self.step_prefixes)

    def states(self) -> StateStore:
        """The app's own conversation store (its data encrypted with the data key)."""
        return StateStore(self.kv, self.keys, 1800, self.client.app[K.SERVICES]["vault"])

    async def set_state(self, openid: str, step: str | None, data: dict[str, Any]) -> None:
        if step is None:
            await self.kv.delete(self.keys.state(openid), self.keys.data(openid))
        else:
            conv = Conversation()
            conv.goto(step, **data)
            await self.states().save(openid, conv)

    async def get_state(self, openid: str) -> tuple[str | None, Any]:
        conv = await self.states().load(openid)
        return conv.step, conv.data

    async def post(
        self, body: bytes, *, safe: bool = False, signed: bool = True
    ) -> tuple[int, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
        params = {"timestamp": timestamp, "nonce": nonce, "openid": "x"}
        params["signature"] = sign(TOKEN, timestamp, nonce) if signed else "0" * 40
        if safe:
            params["encrypt_type"] = "aes"
            found = re.search(rb"<Encrypt>([^<]*)</Encrypt>", body)
            encrypted = found.group(1).decode("utf-8", "replace") if found else ""
            params["msg_signature"] = sign(TOKEN, timestamp, nonce, encrypted) if signed else "x"
        resp = await self.client.post("/wechat", params=params, data=body)
        return resp.status, await resp.text()

    async def say(self, openid: str, text: str) -> tuple[int, str]:
        xml = xmltodict.unparse(
            {
                "xml": {
                    "ToUserName": ACCOUNT,
                    "FromUserName": openid,
                    "CreateTime": str(int(time.time())),
                    "MsgType": "text",
                    "Content": text,
                    "MsgId": str(next(self.counter)),
                }
            },
            full_document=False,
        )
        return await self.post(xml.encode())


@pytest.fixture
def bot(postgres_url: str, tmp_path: Path) -> Iterator[Bot]:
    appid = "wx" + secrets.token_hex(8)
    wechat = EmulatedWeChat(appid)
    wechat.follow("o_fuzz_bound")
    config = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=postgres_url,
        wechat_token=TOKEN,
        wechat_appid=appid,
        wechat_secret=SECRET,
        wechat_aes_key=AES_KEY,
        wechat_api_base=wechat.api_base,
        data_key=DATA_KEY,
        rate_limit_per_minute=10**9,
        guard_rate_limit_per_minute=10**9,
        bind_failures_per_hour=10**9,
    )
    kv = MemoryKV()
    app = create_app(config, kv=kv, migrate=True)
    router = build_router()
    states = [r.state for r in router.routes if r.state is not None]
    loop = asyncio.new_event_loop()
    errors = Errors()
    logging.getLogger().addHandler(errors)
    client: TestClient[Any, Any] = loop.run_until_complete(_client(app))
    try:
        loop.run_until_complete(_seed(app))
        yield Bot(
            loop,
            client,
            kv,
            Keyspace(appid),
            {s for s in states if not s.endswith("*")},
            {s[:-1] for s in states if s.endswith("*")},
            errors,
        )
        assert errors.records == [], "\n\n".join(errors.records[:5])
    finally:
        logging.getLogger().removeHandler(errors)
        loop.run_until_complete(client.close())
        loop.close()
        wechat.close()


async def _client(app: Any) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(AppServer(app))
    await client.start_server()
    return client


async def _seed(app: Any) -> None:
    sessions = app[K.SESSIONS]
    await seed_campus(sessions, app[K.SERVICES]["vault"])
    async with sessions.begin() as s:
        await s.execute(update(Person).where(Person.person_no == "S001").values(roles=ALL_ROLES))


async def _bind(app: Any, openid: str) -> None:
    """S001 (every role) bound to `openid`, whatever the last message did to the binding."""
    sessions = app[K.SESSIONS]
    async with sessions.begin() as s:
        person = await s.scalar(select(Person.id).where(Person.person_no == "S001"))
        account = await s.get(WeChatAccount, openid)
        if account is not None and account.person_id == person:
            return
        await s.execute(
            update(WeChatAccount).where(WeChatAccount.person_id == person).values(person_id=None)
        )
        now = datetime.now(UTC)
        if account is None:
            s.add(WeChatAccount(openid=openid, person_id=person, bound_at=now, last_seen_at=now))
        else:
            account.person_id, account.bound_at = person, now
    await app[K.SERVICES]["accounts"].forget(openid)


def explore(bot: Bot, budget: int = 400) -> dict[str, Found]:
    """Walk the conversations: each keyword, then the bot's options and plausible answers."""
    router = build_router()
    starters = sorted(
        {w for r in router.routes if r.state is None for w in (*r.keywords, *r.phrases)}
    )
    found: dict[str, Found] = {}
    queue: list[tuple[str | None, dict[str, Any], bool, list[str]]] = [
        (None, {}, bound, starters) for bound in (True, False)
    ]
    sent = 0
    while queue and sent < budget:
        step, data, bound, answers = queue.pop(0)
        for answer in answers:
            openid = bot.openid(bound)
            bot.run(bot.set_state(openid, step, data))
            status, body = bot.run(bot.say(openid, answer))
            sent += 1
            assert status == 200, (step, answer, status, body)
            new_step, new_data = bot.run(bot.get_state(openid))
            if new_step is not None and new_step not in found:
                found[new_step] = Found(new_data, bound)
                offered = [o for o in OPTION.findall(_content(body)) if o]
                queue.append((new_step, new_data, bound, [*offered, *PLAUSIBLE]))
    bot.run(bot.set_state(bot.bound_openid, None, {}))
    return found


def _content(body: str) -> str:
    if not body.startswith("<xml>"):
        return ""
    doc = xmltodict.parse(body)["xml"]
    return str(doc.get("Content") or "")


def test_random_texts_through_every_conversation_step(bot: Bot) -> None:
    found = explore(bot)
    steps: dict[str, Found] = dict(found)
    for name in sorted(bot.step_names):
        steps.setdefault(name, Found({}, True))
    for prefix in sorted(bot.step_prefixes):
        if not any(s.startswith(prefix) for s in steps):
            steps[prefix] = Found({}, True)
    assert bot.step_names <= set(steps)
    names = sorted(steps)

    @FUZZ
    @given(step=st.sampled_from(names), text=TEXTS)
    def one(step: str, text: str) -> None:
        seen = steps[step]
        openid = bot.openid(seen.bound)
        bot.run(bot.set_state(openid, step, seen.data))
        logged = len(bot.errors.records)
        status, body = bot.run(bot.say(openid, text))
        assert status == 200, (step, text, status, body)
        assert len(bot.errors.records) == logged, (step, text, bot.errors.records[-1])
        after, data = bot.run(bot.get_state(openid))
        # unchanged, advanced to a known step, or cleared; and its data a JSON object
        assert after is None or after == step or bot.known_step(after), (step, text, after)
        assert isinstance(data, dict)

    one()


RANDOM_FIELDS = st.dictionaries(
    st.sampled_from(
        [
            "ToUserName",
            "FromUserName",
            "CreateTime",
            "MsgType",
            "Content",
            "MsgId",
            "MsgID",
            "Event",
            "EventKey",
            "Ticket",
            "ScanCodeInfo",
            "Status",
            "Encrypt",
            "PicUrl",
            "MediaId",
            "Location_X",
            "Latitude",
            "Url",
            "Recognition",
        ]
    ),
    st.one_of(
        XML_TEXT,
        st.sampled_from(
            [
                "text",
                "event",
                "image",
                "voice",
                "location",
                "link",
                "video",
                "shortvideo",
                "subscribe",
                "SCAN",
                "CLICK",
                "scancode_waitmsg",
                "TEMPLATESENDJOBFINISH",
                "VIEW",
                "o_fuzz_bound",
                "qrscene_place:GATE",
                "place:NOPE",
                "MENU_CHECKIN",
            ]
        ),
        st.integers(-(10**30), 10**30).map(str),
        st.dictionaries(st.sampled_from(["ScanType", "ScanResult", "a"]), XML_TEXT, max_size=2),
    ),
    max_size=12,
)


def _xml(fields: dict[str, Any]) -> bytes:
    return xmltodict.unparse({"xml": fields}, full_document=False).encode()


def test_random_bytes_and_random_xml_through_the_callback(bot: Bot) -> None:
    ok = {200, 400, 403, 413}

    @settings(
        max_examples=700,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        body=st.one_of(
            st.binary(max_size=2000),
            RANDOM_FIELDS.map(
                lambda d: xmltodict.unparse({"xml": d}, full_document=False).encode()
            ),
            st.tuples(
                st.sampled_from(
                    [
                        b"<xml>",
                        b"<xml><Encrypt>",
                        b"<?xml version='1.0'?>",
                        b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]><xml>&a;",
                        b"\xff\xfe",
                    ]
                ),
                st.binary(max_size=500),
            ).map(b"".join),
            st.text(max_size=1000).map(lambda t: t.encode("utf-8", "surrogatepass")),
        ),
        safe=st.booleans(),
        signed=st.sampled_from([True, True, True, False]),
    )
    def one(body: bytes, safe: bool, signed: bool) -> None:
        logged = len(bot.errors.records)
        status, text = bot.run(bot.post(body, safe=safe, signed=signed))
        assert status in ok, (status, text[:200])
        assert len(bot.errors.records) == logged, (body, bot.errors.records[-1])

    one()
    # A well-formed message from a user that is random still leaves the bot answering.
    status, body = bot.run(bot.say("o_fuzz_bound", "help"))
    assert status == 200 and _content(body)
