"""The async WeChat API client and the shared access token, against a fake WeChat server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from bot.clock import FrozenClock
from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV, RedisKV
from bot.settings import Settings
from bot.wechat.api import WeChatAPI
from bot.wechat.errors import (
    CustomQuotaExceeded,
    NetworkError,
    OutsideWindow,
    PermanentError,
    QuotaExceeded,
    RateLimited,
    SystemBusy,
    TokenError,
    WeChatAPIError,
    WeChatError,
    error_for,
)
from bot.wechat.token import AccessTokenManager

SECRET = "s3cret-never-logged"
CUSTOM_SEND = "/cgi-bin/message/custom/send"
TOKEN = "/cgi-bin/stable_token"
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40014: "invalid access_token",
    40037: "invalid template_id",
    42001: "access_token expired",
    43004: "require subscribe",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach-limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    46003: "menu no exist",
    47001: "data format error",
    47003: "argument invalid!",
}


# -- a tiny fake WeChat ------------------------------------------------------------------------


@dataclass
class Call:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, tuple[str | None, str | None, bytes]] | None = None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeWeChat:
    """Answers like WeChat: 200 with JSON, errcode on failure; records every request."""

    base: str = ""
    calls: list[Call] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    # errcodes to answer the next calls of a path with, one per call
    errors: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, int] = field(default_factory=dict)
    hanging: set[str] = field(default_factory=set)
    hang: asyncio.Event = field(default_factory=asyncio.Event)
    token_gate: asyncio.Event | None = None
    token_requested: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(TOKEN, self.stable_token)
        app.router.add_route("*", "/cgi-bin/{tail:.*}", self.endpoint)
        return app

    def to(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    async def _record(self, request: web.Request) -> Call:
        form = None
        if request.content_type == "multipart/form-data":
            form = {}
            reader = await request.multipart()
            async for part in reader:
                assert isinstance(part, aiohttp.BodyPartReader)
                form[part.name or ""] = (
                    part.filename,
                    part.headers.get("Content-Type"),
                    bytes(await part.read()),
                )
            body = b""
        else:
            body = await request.read()
        call = Call(request.path, dict(request.query), dict(request.headers), body, form)
        self.calls.append(call)
        return call

    def _injected(self, path: str) -> web.Response | None:
        if path in self.statuses:
            return web.Response(status=self.statuses[path], text="<html>bad gateway</html>")
        if self.errors[path]:
            code = self.errors[path].pop(0)
            return web.json_response({"errcode": code, "errmsg": ERRMSG.get(code, "unknown")})
        return None

    async def stable_token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        self.token_requested.set()
        if self.token_gate is not None:
            await self.token_gate.wait()
        if (injected := self._injected(TOKEN)) is not None:
            return injected
        body = call.json()
        assert body["appid"].startswith("wx")
        assert body["secret"] == SECRET
        token = f"TOKEN-{len(self.issued) + 1}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def endpoint(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if call.path in self.hanging:
            await self.hang.wait()
        if (injected := self._injected(call.path)) is not None:
            return injected
        token = call.query.get("access_token")
        if token in self.revoked:
            return web.json_response({"errcode": 40001, "errmsg": ERRMSG[40001]})
        if token not in self.issued:
            return web.json_response({"errcode": 40014, "errmsg": ERRMSG[40014]})
        # WeChat labels JSON text/plain; the client must not depend on the content type
        return web.Response(text=json.dumps(self._answer(call)), content_type="text/plain")

    def _answer(self, call: Call) -> dict[str, Any]:
        ok = {"errcode": 0, "errmsg": "ok"}
        if call.path == "/cgi-bin/message/template/send":
            return {**ok, "msgid": 200228332}
        if call.path == "/cgi-bin/media/upload":
            return {"type": "image", "media_id": "MEDIA-1", "created_at": 1700000000}
        if call.path == "/cgi-bin/qrcode/create":
            body = call.json()
            answer = {"ticket": "TICKET-1", "url": "http://weixin.qq.com/q/abc"}
            if "expire_seconds" in body:
                answer["expire_seconds"] = body["expire_seconds"]
            return answer
        if call.path == "/cgi-bin/menu/get":
            return {"menu": {"button": [{"type": "click", "name": "打卡", "key": "CHECKIN"}]}}
        if call.path == "/cgi-bin/tags/create":
            return {"tag": {"id": 134, "name": call.json()["tag"]["name"]}}
        if call.path == "/cgi-bin/menu/addconditional":
            return {"menuid": "208379533"}
        if call.path == "/cgi-bin/user/tag/get":  # two pages, as WeChat pages 10,000 at a time
            if call.json()["next_openid"] == "":
                return {"count": 2, "data": {"openid": ["o1", "o2"]}, "next_openid": "o2"}
            if call.json()["next_openid"] == "o2":
                return {"count": 1, "data": {"openid": ["o3"]}, "next_openid": "o3"}
            return {"count": 0, "next_openid": ""}
        return ok


@pytest.fixture
async def fake(aiohttp_server: Any) -> AsyncIterator[FakeWeChat]:
    wechat = FakeWeChat()
    server = await aiohttp_server(wechat.app())
    wechat.base = str(server.make_url("")).rstrip("/")
    yield wechat
    wechat.hang.set()  # let hanging handlers finish so the server closes cleanly


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class SpyKV:
    """Any KV, telling when an attempt to take the token lock was refused."""

    def __init__(self, inner: KV, lock_refused: asyncio.Event | None = None) -> None:
        self.inner = inner
        self.lock_refused = lock_refused or asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def set(self, key: str, value: bytes | str, ttl: float, *, nx: bool = False) -> bool:
        stored = await self.inner.set(key, value, ttl, nx=nx)
        if nx and not stored:
            self.lock_refused.set()
        return stored


def settings_for(base: str, appid: str = "wxtest0000000001") -> Settings:
    return Settings(wechat_appid=appid, wechat_secret=SECRET, wechat_api_base=base)


def make_tokens(
    session: aiohttp.ClientSession,
    base: str,
    kv: Any = None,
    clock: FrozenClock | None = None,
    appid: str = "wxtest0000000001",
    **kwargs: Any,
) -> AccessTokenManager:
    return AccessTokenManager(
        session,
        settings_for(base, appid),
        kv if kv is not None else MemoryKV(),
        Keyspace(appid),
        clock or FrozenClock(),
        poll_interval=0.005,
        **kwargs,
    )


def make_api(
    session: aiohttp.ClientSession, fake: FakeWeChat, timeout: float = 10.0
) -> tuple[WeChatAPI, AccessTokenManager]:
    tokens = make_tokens(session, fake.base)
    return WeChatAPI(session, settings_for(fake.base), tokens, timeout=timeout), tokens


def errors_counted(code: str) -> float:
    value = REGISTRY.get_sample_value("healthbot_wechat_api_errors_total", {"code": code})
    return value or 0.0


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errcode", "cls"),
    [
        (40001, TokenError),
        (40014, TokenError),
        (42001, TokenError),
        (40003, PermanentError),
        (40037, PermanentError),
        (43004, PermanentError),
        (47001, PermanentError),
        (47003, PermanentError),
        (45009, QuotaExceeded),
        (45011, RateLimited),
        (45015, OutsideWindow),
        (45047, CustomQuotaExceeded),
        (-1, SystemBusy),
        (99999, PermanentError),
    ],
)
def test_error_for_picks_the_class(errcode: int, cls: type[WeChatAPIError]) -> None:
    error = error_for(errcode, "msg", CUSTOM_SEND)
    assert type(error) is cls
    assert error.errcode == errcode
    assert error.path == CUSTOM_SEND


def test_error_message_names_path_code_and_message() -> None:
    error = error_for(43004, "require subscribe", CUSTOM_SEND)
    assert str(error) == "WeChat API /cgi-bin/message/custom/send failed: 43004 require subscribe"


def test_retryable_marks_what_can_work_later() -> None:
    assert error_for(-1, "", "/p").retryable
    assert error_for(45011, "", "/p").retryable
    assert not error_for(43004, "", "/p").retryable
    assert not error_for(45015, "", "/p").retryable
    assert not error_for(45047, "", "/p").retryable
    assert NetworkError("/p", "timed out").retryable
    assert isinstance(NetworkError("/p", "x"), WeChatError)


# -- the access token --------------------------------------------------------------------------


async def test_token_fetched_once_and_cached(fake: FakeWeChat, session: aiohttp.ClientSession):
    tokens = make_tokens(session, fake.base)
    assert await tokens.get() == "TOKEN-1"
    assert await tokens.get() == "TOKEN-1"
    calls = fake.to(TOKEN)
    assert len(calls) == 1
    assert calls[0].json() == {
        "grant_type": "client_credential",
        "appid": "wxtest0000000001",
        "secret": SECRET,
        "force_refresh": False,
    }


async def test_token_cached_until_margin_before_expiry(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    clock = FrozenClock()
    tokens = make_tokens(session, fake.base, MemoryKV(monotonic=clock.monotonic), clock)
    assert await tokens.get() == "TOKEN-1"
    clock.advance(7200 - 300 - 1)
    assert await tokens.get() == "TOKEN-1"
    clock.advance(2)
    assert await tokens.get() == "TOKEN-2"


async def test_concurrent_gets_make_one_request(fake: FakeWeChat, session: aiohttp.ClientSession):
    fake.token_gate = asyncio.Event()
    tokens = make_tokens(session, fake.base)
    tasks = [asyncio.create_task(tokens.get()) for _ in range(20)]
    await fake.token_requested.wait()
    for _ in range(10):
        await asyncio.sleep(0)
    fake.token_gate.set()
    assert set(await asyncio.gather(*tasks)) == {"TOKEN-1"}
    assert len(fake.to(TOKEN)) == 1


async def test_two_processes_sharing_a_kv_fetch_once(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    kv = SpyKV(MemoryKV())
    async with aiohttp.ClientSession() as other_session:
        first = make_tokens(session, fake.base, kv)
        second = make_tokens(other_session, fake.base, kv)
        fake.token_gate = asyncio.Event()
        tasks = [asyncio.create_task(m.get()) for m in (first, second) for _ in range(5)]
        await fake.token_requested.wait()
        # the other "process" has found the lock taken and is waiting for the token
        await asyncio.wait_for(kv.lock_refused.wait(), 5)
        fake.token_gate.set()
        assert set(await asyncio.gather(*tasks)) == {"TOKEN-1"}
    assert len(fake.to(TOKEN)) == 1
    assert await kv.get(Keyspace("wxtest0000000001").access_token_lock()) is None


async def test_waiter_gives_up_on_a_stuck_lock(fake: FakeWeChat, session: aiohttp.ClientSession):
    kv = MemoryKV()
    keyspace = Keyspace("wxtest0000000001")
    await kv.set(keyspace.access_token_lock(), "someone-else", ttl=60)
    tokens = make_tokens(session, fake.base, kv, wait_timeout=0.05)
    before = errors_counted("token_wait")
    with pytest.raises(NetworkError, match="another process"):
        await tokens.get()
    assert fake.to(TOKEN) == []
    assert errors_counted("token_wait") == before + 1


async def test_waiter_takes_over_when_the_lock_expires(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    kv = MemoryKV()
    keyspace = Keyspace("wxtest0000000001")
    # a refresher that died holding the lock: its lock expires, and a waiter fetches instead
    await kv.set(keyspace.access_token_lock(), "crashed-process", ttl=0.03)
    tokens = make_tokens(session, fake.base, kv)
    assert await tokens.get() == "TOKEN-1"
    assert len(fake.to(TOKEN)) == 1


async def test_invalidate_drops_only_the_bad_token(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    tokens = make_tokens(session, fake.base)
    assert await tokens.get() == "TOKEN-1"
    await tokens.invalidate("TOKEN-0")  # an older token: the current one stays
    assert await tokens.get() == "TOKEN-1"
    await tokens.invalidate("TOKEN-1")
    assert await tokens.get() == "TOKEN-2"
    assert len(fake.to(TOKEN)) == 2


async def test_force_refresh_asks_wechat_for_a_new_token(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    tokens = make_tokens(session, fake.base)
    assert await tokens.get() == "TOKEN-1"
    assert await tokens.get(force_refresh=True) == "TOKEN-2"
    assert fake.to(TOKEN)[-1].json()["force_refresh"] is True
    assert await tokens.get() == "TOKEN-2"


async def test_token_endpoint_error_is_typed(fake: FakeWeChat, session: aiohttp.ClientSession):
    fake.errors[TOKEN] = [40164]  # IP not whitelisted
    tokens = make_tokens(session, fake.base)
    with pytest.raises(PermanentError) as caught:
        await tokens.get()
    assert caught.value.errcode == 40164
    assert SECRET not in str(caught.value)


# -- the API calls -----------------------------------------------------------------------------


async def test_send_text_is_unescaped_utf8(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    result = await api.send_text("openid-1", "你好，打卡成功 ✅")
    assert result["errcode"] == 0
    [call] = fake.to(CUSTOM_SEND)
    assert "你好，打卡成功 ✅".encode() in call.body
    assert b"\\u" not in call.body
    assert call.headers["Content-Type"] == "application/json; charset=utf-8"
    assert call.json() == {
        "touser": "openid-1",
        "msgtype": "text",
        "text": {"content": "你好，打卡成功 ✅"},
    }
    assert call.query["access_token"] == "TOKEN-1"


async def test_40001_refreshes_and_retries_once(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    fake.errors[CUSTOM_SEND] = [40001]
    before = errors_counted("40001")
    assert (await api.send_text("openid-1", "hi"))["errcode"] == 0
    assert [c.query["access_token"] for c in fake.to(CUSTOM_SEND)] == ["TOKEN-1", "TOKEN-2"]
    assert len(fake.to(TOKEN)) == 2
    assert errors_counted("40001") == before + 1


async def test_second_40001_raises_token_error(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    fake.errors[CUSTOM_SEND] = [40001, 40001]
    with pytest.raises(TokenError) as caught:
        await api.send_text("openid-1", "hi")
    assert caught.value.errcode == 40001
    assert "TOKEN-" not in str(caught.value)
    assert len(fake.to(CUSTOM_SEND)) == 2
    assert len(fake.to(TOKEN)) == 2


async def test_revoked_token_in_many_coroutines_refreshes_once(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    api, tokens = make_api(session, fake)
    fake.revoked.add(await tokens.get())
    results = await asyncio.gather(*(api.send_text(f"openid-{i}", "hi") for i in range(8)))
    assert all(r["errcode"] == 0 for r in results)
    assert fake.issued == ["TOKEN-1", "TOKEN-2"]


@pytest.mark.parametrize(
    ("errcode", "cls"),
    [
        (40003, PermanentError),
        (40037, PermanentError),
        (43004, PermanentError),
        (47001, PermanentError),
        (47003, PermanentError),
        (45009, QuotaExceeded),
        (45011, RateLimited),
        (45015, OutsideWindow),
        (45047, CustomQuotaExceeded),
        (-1, SystemBusy),
        (61451, PermanentError),
    ],
)
async def test_errcodes_raise_their_class(
    fake: FakeWeChat, session: aiohttp.ClientSession, errcode: int, cls: type[WeChatAPIError]
):
    api, _ = make_api(session, fake)
    fake.errors[CUSTOM_SEND] = [errcode]
    before = errors_counted(str(errcode))
    with pytest.raises(cls) as caught:
        await api.send_text("openid-1", "hi")
    assert type(caught.value) is cls
    assert caught.value.errcode == errcode
    assert str(caught.value).startswith(f"WeChat API {CUSTOM_SEND} failed: {errcode} ")
    assert len(fake.to(CUSTOM_SEND)) == 1  # only token errors are retried here
    assert errors_counted(str(errcode)) == before + 1


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_server_is_network_error(session: aiohttp.ClientSession):
    base = f"http://127.0.0.1:{unused_port()}"
    tokens = make_tokens(session, base)
    api = WeChatAPI(session, settings_for(base), tokens)
    before = errors_counted("network")
    with pytest.raises(NetworkError) as caught:
        await api.send_text("openid-1", "hi")
    assert caught.value.path == TOKEN
    assert SECRET not in str(caught.value)
    assert errors_counted("network") == before + 1


async def test_timeout_is_network_error(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake, timeout=0.2)
    fake.hanging.add(CUSTOM_SEND)
    with pytest.raises(NetworkError, match=r"timed out after 0\.2 s") as caught:
        await api.send_text("openid-1", "hi")
    assert caught.value.path == CUSTOM_SEND
    assert "TOKEN-" not in str(caught.value)


async def test_http_error_status_is_network_error(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    fake.statuses["/cgi-bin/menu/get"] = 502
    before = errors_counted("http_502")
    with pytest.raises(NetworkError, match="HTTP 502"):
        await api.get_menu()
    assert errors_counted("http_502") == before + 1


async def test_upload_image_is_multipart_field_media(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    api, _ = make_api(session, fake)
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    assert await api.upload_image(png, "pass.png") == "MEDIA-1"
    [call] = fake.to("/cgi-bin/media/upload")
    assert call.query == {"type": "image", "access_token": "TOKEN-1"}
    assert call.form == {"media": ("pass.png", "image/png", png)}


async def test_upload_retried_after_40001_sends_the_file_again(
    fake: FakeWeChat, session: aiohttp.ClientSession
):
    api, _ = make_api(session, fake)
    fake.errors["/cgi-bin/media/upload"] = [42001]
    assert await api.upload_image(b"img", "a.jpg") == "MEDIA-1"
    calls = fake.to("/cgi-bin/media/upload")
    assert [c.form for c in calls] == [{"media": ("a.jpg", "image/jpeg", b"img")}] * 2


async def test_send_image_and_template(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    await api.send_image("openid-1", "MEDIA-1")
    assert fake.to(CUSTOM_SEND)[0].json() == {
        "touser": "openid-1",
        "msgtype": "image",
        "image": {"media_id": "MEDIA-1"},
    }
    msgid = await api.send_template(
        "openid-1",
        "TPL-1",
        {"first": "体温异常", "keyword1": {"value": "37.8", "color": "#FF0000"}},
        url="https://campus.example/why",
    )
    assert msgid == 200228332
    assert fake.to("/cgi-bin/message/template/send")[0].json() == {
        "touser": "openid-1",
        "template_id": "TPL-1",
        "data": {"first": {"value": "体温异常"}, "keyword1": {"value": "37.8", "color": "#FF0000"}},
        "url": "https://campus.example/why",
    }


async def test_qrcodes_permanent_and_temporary(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    permanent = await api.create_qrcode_str_scene("place:LIB-1", None)
    temporary = await api.create_qrcode_str_scene("place:LIB-1", 3600)
    assert permanent["ticket"] == "TICKET-1"
    assert temporary["expire_seconds"] == 3600
    bodies = [c.json() for c in fake.to("/cgi-bin/qrcode/create")]
    assert bodies == [
        {
            "action_name": "QR_LIMIT_STR_SCENE",
            "action_info": {"scene": {"scene_str": "place:LIB-1"}},
        },
        {
            "expire_seconds": 3600,
            "action_name": "QR_STR_SCENE",
            "action_info": {"scene": {"scene_str": "place:LIB-1"}},
        },
    ]


@pytest.mark.parametrize(
    ("scene", "expire", "message"),
    [
        ("", None, "has 0 characters; allowed 1–64"),
        ("x" * 65, None, "has 65 characters"),
        ("place:A", 0, "expire_seconds 0 out of"),
        ("place:A", 30 * 24 * 3600 + 1, "out of 1–2592000"),
    ],
)
async def test_qrcode_bad_input_is_refused_before_calling(
    fake: FakeWeChat, session: aiohttp.ClientSession, scene: str, expire: int | None, message: str
):
    api, _ = make_api(session, fake)
    with pytest.raises(ValueError, match=message):
        await api.create_qrcode_str_scene(scene, expire)
    assert fake.calls == []


async def test_menus_and_tags(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    menu = {"button": [{"type": "click", "name": "打卡", "key": "CHECKIN"}]}
    await api.create_menu(menu)
    assert "打卡".encode() in fake.to("/cgi-bin/menu/create")[0].body
    assert (await api.get_menu())["menu"] == menu
    assert await api.create_tag("guards") == 134
    openids = [f"openid-{i}" for i in range(120)]
    await api.tag_users(134, openids)
    batches = [c.json() for c in fake.to("/cgi-bin/tags/members/batchtagging")]
    assert [len(b["openid_list"]) for b in batches] == [50, 50, 20]
    assert [i for b in batches for i in b["openid_list"]] == openids
    assert all(b["tagid"] == 134 for b in batches)
    conditional = {**menu, "matchrule": {"tag_id": "134"}}
    assert await api.add_conditional_menu(conditional) == "208379533"
    await api.delete_conditional_menu("208379533")
    assert fake.to("/cgi-bin/menu/delconditional")[0].json() == {"menuid": "208379533"}
    assert await api.tagged_users(134) == ["o1", "o2", "o3"]
    assert [c.json()["next_openid"] for c in fake.to("/cgi-bin/user/tag/get")] == ["", "o2", "o3"]
    await api.untag_users(134, openids[:60])
    untag = [c.json() for c in fake.to("/cgi-bin/tags/members/batchuntagging")]
    assert [len(b["openid_list"]) for b in untag] == [50, 10]


async def test_get_menu_without_a_menu_is_empty(fake: FakeWeChat, session: aiohttp.ClientSession):
    api, _ = make_api(session, fake)
    fake.errors["/cgi-bin/menu/get"] = [46003]
    assert await api.get_menu() == {}


# -- with a real Redis -------------------------------------------------------------------------


@pytest.fixture
async def redis_url() -> str:
    url = os.environ.get("HEALTHBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    probe = RedisKV.from_url(url)
    try:
        answers = await probe.ping()
    finally:
        await probe.close()
    if not answers:
        reason = f"no Redis answers at {url} (set HEALTHBOT_TEST_REDIS_URL)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.mark.redis
async def test_two_processes_share_the_token_through_redis(
    fake: FakeWeChat, session: aiohttp.ClientSession, redis_url: str
):
    appid = "wxtest" + secrets.token_hex(6)  # a key prefix no other run uses
    keyspace = Keyspace(appid)
    kv_one, kv_two = RedisKV.from_url(redis_url), RedisKV.from_url(redis_url)
    # Either process may win the lock; the other's refusal is what we wait for.
    spy = SpyKV(kv_two)
    spy_one = SpyKV(kv_one, spy.lock_refused)
    try:
        async with aiohttp.ClientSession() as other_session:
            first = make_tokens(session, fake.base, spy_one, appid=appid)
            second = make_tokens(other_session, fake.base, spy, appid=appid)
            fake.token_gate = asyncio.Event()
            tasks = [asyncio.create_task(m.get()) for m in (first, second) for _ in range(5)]
            await fake.token_requested.wait()
            await asyncio.wait_for(spy.lock_refused.wait(), 5)
            fake.token_gate.set()
            assert set(await asyncio.gather(*tasks)) == {"TOKEN-1"}
            assert len(fake.to(TOKEN)) == 1

            ttl_ms = await kv_one.redis.pttl(keyspace.access_token())
            assert (7200 - 300 - 5) * 1000 < ttl_ms <= (7200 - 300) * 1000
            assert await kv_one.get(keyspace.access_token_lock()) is None

            # a 40001 seen in one process drops the token for both; the next get refreshes
            await second.invalidate("TOKEN-1")
            assert await first.get() == "TOKEN-2"
            assert await second.get() == "TOKEN-2"
            assert len(fake.to(TOKEN)) == 2
    finally:
        await kv_one.delete(keyspace.access_token(), keyspace.access_token_lock())
        await kv_one.close()
        await kv_two.close()
