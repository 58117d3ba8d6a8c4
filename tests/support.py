"""Test helpers: a WeChat-like client for the callback, a fake WeChat API, a seeded campus."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import xmltodict
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.wechat.callback import HANDLER_CANCELLATION
from bot.wechat.security import Cipher, sign
from campus.identity import resident_id_check_digit
from campus.secrets import DataVault
from storage.models import Person, Unit

TOKEN = "test-token"
APPID = "wx1234567890abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNT = "gh_testaccount"
DATA_KEY = "test-data-key"

_ids = itertools.count(7_000_000_000_000_000_000)


class AppServer(TestServer):
    """aiohttp's test server, run as `healthbot serve` runs the app: aiohttp's own test
    server cancels a handler when its client hangs up, which the callback's late answers
    must outlive (bot/wechat/callback.py, HANDLER_CANCELLATION)."""

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:
        kwargs["handler_cancellation"] = HANDLER_CANCELLATION
        return await super()._make_runner(**kwargs)


def reserved_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a free port, and kept: for a server whose address another's
    settings must name before it starts. A port only found free (aiohttp's `unused_port`)
    can be taken meanwhile, by the next server bound to port 0."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def resident_id(prefix17: str) -> str:
    return prefix17 + resident_id_check_digit(prefix17)


def text_xml(openid: str, content: str, msg_id: int | None = None, create_time: int = 0) -> str:
    return xmltodict.unparse(
        {
            "xml": {
                "ToUserName": ACCOUNT,
                "FromUserName": openid,
                "CreateTime": str(create_time or int(time.time())),
                "MsgType": "text",
                "Content": content,
                "MsgId": str(msg_id or next(_ids)),
            }
        },
        full_document=False,
    )


def event_xml(openid: str, event: str, key: str = "", create_time: int = 0, **extra: Any) -> str:
    body: dict[str, Any] = {
        "ToUserName": ACCOUNT,
        "FromUserName": openid,
        "CreateTime": str(create_time or int(time.time())),
        "MsgType": "event",
        "Event": event,
        "EventKey": key,
        **extra,
    }
    return xmltodict.unparse({"xml": body}, full_document=False)


@dataclass
class WeChat:
    """Sends callbacks the way WeChat's servers do, signed (and encrypted in safe mode)."""

    client: TestClient[Any, Any]
    token: str = TOKEN
    appid: str = APPID
    aes_key: str | None = None
    now: Callable[[], float] = time.time

    def params(self, encrypted: str | None = None) -> dict[str, str]:
        timestamp, nonce = str(int(self.now())), "1234567"
        params = {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": sign(self.token, timestamp, nonce),
            "openid": "ignored",
        }
        if encrypted is not None:
            params["encrypt_type"] = "aes"
            params["msg_signature"] = sign(self.token, timestamp, nonce, encrypted)
        return params

    async def post(self, xml: str) -> tuple[int, str]:
        if self.aes_key:
            encrypted = Cipher(self.aes_key, self.appid).encrypt(xml)
            body = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
            resp = await self.client.post("/wechat", params=self.params(encrypted), data=body)
        else:
            resp = await self.client.post("/wechat", params=self.params(), data=xml.encode())
        return resp.status, await resp.text()

    async def reply(self, xml: str) -> dict[str, Any] | None:
        """The parsed passive reply, or None for `success`."""
        status, body = await self.post(xml)
        assert status == 200, body
        if body == "success":
            return None
        doc = xmltodict.parse(body)["xml"]
        if self.aes_key:
            plain = Cipher(self.aes_key, self.appid).decrypt(doc["Encrypt"])
            doc = xmltodict.parse(plain)["xml"]
        return dict(doc)

    async def say(self, openid: str, content: str, msg_id: int | None = None) -> str:
        """The text of the reply to a text message ('' for no reply)."""
        reply = await self.reply(text_xml(openid, content, msg_id, int(self.now())))
        return "" if reply is None else str(reply.get("Content", ""))


@dataclass
class FakeWeChatAPI:
    """The few API endpoints the spine calls, recording what it sent."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    token_requests: int = 0
    # Access (issue 7): uploaded images, user tags and who has them.
    uploads: list[bytes] = field(default_factory=list)
    fail_uploads: bool = False
    tags: dict[str, int] = field(default_factory=dict)
    tagged: dict[int, set[str]] = field(default_factory=dict)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/stable_token", self._token)
        app.router.add_post("/cgi-bin/message/custom/send", self._custom)
        app.router.add_post("/cgi-bin/media/upload", self._upload)
        app.router.add_get("/cgi-bin/tags/get", self._tags)
        app.router.add_post("/cgi-bin/tags/members/batchtagging", self._tag_users)
        return app

    async def _upload(self, request: web.Request) -> web.Response:
        if self.fail_uploads:
            return web.json_response({"errcode": -1, "errmsg": "system error"})
        form = await request.post()
        media = form["media"]
        assert not isinstance(media, str)
        self.uploads.append(media.file.read())
        return web.json_response({"type": "image", "media_id": f"MEDIA{len(self.uploads)}"})

    async def _tags(self, request: web.Request) -> web.Response:
        tags = [
            {"id": i, "name": n, "count": len(self.tagged.get(i, ()))} for n, i in self.tags.items()
        ]
        return web.json_response({"tags": tags})

    async def _tag_users(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.tagged.setdefault(int(body["tagid"]), set()).update(body["openid_list"])
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        return web.json_response({"access_token": "TOKEN", "expires_in": 7200})

    async def _custom(self, request: web.Request) -> web.Response:
        self.sent.append(await request.json())
        return web.json_response({"errcode": 0, "errmsg": "ok"})


async def seed_campus(sessions: async_sessionmaker[AsyncSession], vault: DataVault) -> None:
    """A unit and three people: S001 (student), S002 (student), T001 (staff, English)."""
    async with sessions.begin() as session:
        unit = Unit(code="CS", name="Computer Science")
        session.add(unit)
        await session.flush()
        for no, name, category, id_number, locale in [
            ("S001", "张三", "student", resident_id("11010520000101123"), "zh_CN"),
            ("S002", "李四", "student", resident_id("11010520000202456"), "zh_CN"),
            ("T001", "Jane Smith", "staff", resident_id("42010119800303789"), "en"),
        ]:
            session.add(
                Person(
                    person_no=no,
                    name=name,
                    category=category,
                    unit_id=unit.id,
                    id_hash=vault.lookup_hash(id_number, "id"),
                    id_cipher=vault.encrypt(id_number),
                    locale=locale,
                )
            )


def id_tail(person_no: str) -> str:
    return {
        "S001": resident_id("11010520000101123")[-6:],
        "S002": resident_id("11010520000202456")[-6:],
        "T001": resident_id("42010119800303789")[-6:],
    }[person_no]
