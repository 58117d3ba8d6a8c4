"""A fake bot server and a client for the simulator mounted at /sim/, shared by the tests."""

from __future__ import annotations

import hmac
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import TextReply

from simulator.clock import ManualClock
from simulator.signing import signature
from simulator.state import SimulatorState
from simulator.tokens import LIFETIME, OVERLAP

# WeChat's published sample account, so signatures can be checked against known values.
TOKEN = "spamtest"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APPID = "wx2c2769f8efd9abc2"
SECRET = "s3cret-for-tests"

PERSONAS = [
    {
        "key": "S001",
        "person_no": "S001",
        "name": "张三",
        "category": "student",
        "roles": [],
        "unit": "Class 1",
        "bind_hint": "123456",
    },
    {
        "key": "G001",
        "person_no": "G001",
        "name": "李四",
        "category": "staff",
        "roles": ["guard"],
        "unit": "Security",
        "bind_hint": "654321",
    },
]


@dataclass
class Callback:
    """One request the fake bot received, already verified and decrypted."""

    query: dict[str, str]
    body: str
    xml: str
    message: Any  # a wechatpy message


Answer = Callable[[Callback], Awaitable[str]]


async def echo(callback: Callback) -> str:
    message = callback.message
    if message.type == "text":
        return TextReply(message=message, content=f"echo: {message.content}").render()
    return "success"


@dataclass
class FakeBot:
    """Stands in for the bot: checks each callback as the bot must, answers as told."""

    safe: bool = False
    encrypt_replies: bool = True
    answer: Answer = echo
    callbacks: list[Callback] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    personas: list[dict[str, Any]] = field(default_factory=lambda: list(PERSONAS))

    @property
    def crypto(self) -> WeChatCrypto:
        return WeChatCrypto(TOKEN, AES_KEY, APPID)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/wechat", self._wechat)
        app.router.add_get("/personas", self._personas)
        return app

    async def _personas(self, request: web.Request) -> web.Response:
        return web.json_response({"personas": self.personas})

    async def _wechat(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        body = await request.text()
        expected = signature(TOKEN, query["timestamp"], query["nonce"])
        if not hmac.compare_digest(expected, query["signature"]):
            self.rejected.append("bad signature")
            raise web.HTTPForbidden()
        xml = body
        if self.safe:
            assert query["encrypt_type"] == "aes"
            xml = self.crypto.decrypt_message(
                body, query["msg_signature"], query["timestamp"], query["nonce"]
            )
        callback = Callback(query, body, xml, parse_message(xml))
        self.callbacks.append(callback)
        reply = await self.answer(callback)
        if self.safe and self.encrypt_replies and reply not in ("", "success"):
            reply = self.crypto.encrypt_message(reply, query["nonce"], query["timestamp"])
        return web.Response(text=reply, content_type="application/xml")


@dataclass
class Sim:
    client: TestClient[Any, Any]
    state: SimulatorState
    clock: ManualClock
    bot: FakeBot
    _token: str | None = None
    _token_at: float = 0.0

    async def token(self) -> str:
        """A valid token, fetched again once the test has moved the clock past its life."""
        now = self.state.clock.time()
        if self._token is None or now - self._token_at >= LIFETIME - OVERLAP:
            self._token_at = now
            body = await self.get(
                "/sim/api/cgi-bin/token",
                grant_type="client_credential",
                appid=APPID,
                secret=SECRET,
            )
            self._token = body["access_token"]
        return self._token

    async def get(self, path: str, **params: str) -> Any:
        async with self.client.get(path, params=params) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def api(self, path: str, body: Any = None, **params: str) -> dict[str, Any]:
        """Call an emulated endpoint with a valid token; GET without a body, POST with one."""
        params = {"access_token": await self.token(), **params}
        url = "/sim/api/cgi-bin/" + path
        if body is None:
            request = self.client.get(url, params=params)
        else:
            request = self.client.post(url, params=params, json=body)
        async with request as resp:
            assert resp.status == 200, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result

    async def chat(self, openid: str, expect: int = 200, **body: Any) -> dict[str, Any]:
        async with self.client.post("/sim/chat/send", json={"openid": openid, **body}) as resp:
            assert resp.status == expect, await resp.text()
            result: dict[str, Any] = await resp.json()
            return result

    async def persona(self, person_no: str = "S001") -> str:
        """Load the personas (as the page does) and return one's openid."""
        async with self.client.get("/sim/chat/personas") as resp:
            body = await resp.json()
        return next(p["openid"] for p in body["personas"] if p["person_no"] == person_no)

    async def upload(self, data: bytes, filename: str = "a.png") -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("media", io.BytesIO(data), filename=filename, content_type="image/png")
        params = {"access_token": await self.token(), "type": "image"}
        async with self.client.post("/sim/api/cgi-bin/media/upload", params=params, data=form) as r:
            result: dict[str, Any] = await r.json()
            return result
