"""The bot's async client for the WeChat API: one transport, typed errors, one token retry."""

from __future__ import annotations

import json
import logging
import mimetypes
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import aiohttp

from bot.metrics import WECHAT_API_ERRORS
from bot.settings import Settings
from bot.wechat.errors import NetworkError, PermanentError, TokenError, error_for

if TYPE_CHECKING:
    from bot.wechat.token import AccessTokenManager

log = logging.getLogger(__name__)

FormFactory = Callable[[], aiohttp.FormData]

TAG_BATCH = 50  # /cgi-bin/tags/members/batchtagging takes at most 50 openids a call
QR_MAX_EXPIRE = 30 * 24 * 3600
_MENU_MISSING = 46003

# aiohttp puts the full URL (query included) into some exception texts; the token must not
# reach a log through an error message.
_TOKEN_IN_TEXT = re.compile(r"access_token=[^&\s'\"]*")


def _describe(exc: BaseException, client_timeout: aiohttp.ClientTimeout) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {client_timeout.total} s"
    text = str(exc) or "no details"
    return _TOKEN_IN_TEXT.sub("access_token=***", f"{type(exc).__name__}: {text}")


def network_error(path: str, code: str, reason: str) -> NetworkError:
    """A NetworkError, counted in the errors metric under `code`."""
    WECHAT_API_ERRORS.labels(code=code).inc()
    return NetworkError(path, reason)


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    path: str,
    *,
    client_timeout: aiohttp.ClientTimeout,
    params: Mapping[str, str] | None = None,
    json_body: Any = None,
    form: aiohttp.FormData | None = None,
) -> dict[str, Any]:
    """Send one request and return WeChat's JSON answer; raise a typed error for any failure.

    `path` (without the query, so without the token) names the call in errors and metrics.
    """
    kwargs: dict[str, Any] = {"params": params, "timeout": client_timeout}
    if json_body is not None:
        # WeChat has shown \uXXXX escapes literally (menus, messages): send real UTF-8.
        kwargs["data"] = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        kwargs["headers"] = {"Content-Type": "application/json; charset=utf-8"}
    elif form is not None:
        kwargs["data"] = form
    try:
        async with session.request(method, url, **kwargs) as response:
            status = response.status
            raw = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        # `from None`: the chained aiohttp exception may print the URL with the token.
        raise network_error(path, "network", _describe(exc, client_timeout)) from None
    if status != 200:
        raise network_error(path, f"http_{status}", f"HTTP {status}")
    try:
        # Not response.json(): WeChat often labels its JSON text/plain.
        payload = json.loads(raw)
    except ValueError:
        raise network_error(path, "invalid_response", "answer is not JSON") from None
    if not isinstance(payload, dict):
        raise network_error(path, "invalid_response", f"answer is a JSON {type(payload).__name__}")
    errcode = payload.get("errcode", 0)
    if errcode:
        try:
            code = int(errcode)
        except (TypeError, ValueError):
            raise network_error(
                path, "invalid_response", f"errcode {errcode!r} is not a number"
            ) from None
        WECHAT_API_ERRORS.labels(code=str(code)).inc()
        raise error_for(code, str(payload.get("errmsg", "")), path)
    return payload


def _field(payload: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in payload:
        raise network_error(path, "invalid_response", f"answer has no {key!r}")
    return payload[key]


class WeChatAPI:
    """The calls the bot makes; each returns WeChat's answer or raises a `WeChatError`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: Settings,
        tokens: AccessTokenManager,
        *,
        timeout: float = 10.0,
    ) -> None:
        self._session = session
        self._base = settings.wechat_api_base.rstrip("/")
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def _send(
        self,
        token: str,
        method: str,
        path: str,
        json: Any,
        data: FormFactory | None,
        params: Mapping[str, str] | None,
    ) -> dict[str, Any]:
        return await request_json(
            self._session,
            method,
            self._base + path,
            path,
            client_timeout=self._timeout,
            params={**(params or {}), "access_token": token},
            json_body=json,
            # a fresh form per attempt: a sent FormData can't be sent again
            form=data() if data is not None else None,
        )

    async def _call(
        self,
        method: str,
        path: str,
        json: Any = None,
        data: FormFactory | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Call `path` with the access token; on a token error refresh it and retry once."""
        token = await self._tokens.get()
        try:
            return await self._send(token, method, path, json, data, params)
        except TokenError as exc:
            log.warning(
                "WeChat rejected the access token on %s (%s); refreshing, retrying once",
                path,
                exc.errcode,
            )
            await self._tokens.invalidate(token)
        token = await self._tokens.get()
        return await self._send(token, method, path, json, data, params)

    # -- messages ----------------------------------------------------------------------------

    async def send_text(self, openid: str, content: str) -> dict[str, Any]:
        return await self._call(
            "POST",
            "/cgi-bin/message/custom/send",
            json={"touser": openid, "msgtype": "text", "text": {"content": content}},
        )

    async def send_image(self, openid: str, media_id: str) -> dict[str, Any]:
        return await self._call(
            "POST",
            "/cgi-bin/message/custom/send",
            json={"touser": openid, "msgtype": "image", "image": {"media_id": media_id}},
        )

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, str | Mapping[str, str]],
        url: str | None = None,
        client_msg_id: str | None = None,
    ) -> int:
        """Send a template message; a plain string value becomes `{"value": ...}`. Returns msgid.

        `client_msg_id`: WeChat sends one message per openid + client_msg_id within 10 minutes,
        so a retry after a lost answer does not deliver twice.
        """
        path = "/cgi-bin/message/template/send"
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": {k: {"value": v} if isinstance(v, str) else dict(v) for k, v in data.items()},
        }
        if url is not None:
            body["url"] = url
        if client_msg_id is not None:
            body["client_msg_id"] = client_msg_id
        result = await self._call("POST", path, json=body)
        return int(_field(result, "msgid", path))

    # -- media and QR codes ------------------------------------------------------------------

    async def upload_image(self, data: bytes, filename: str = "image.png") -> str:
        """Upload a temporary image (kept by WeChat for 3 days); returns its media_id."""
        if not data:
            raise ValueError(f"image {filename!r} is empty")
        path = "/cgi-bin/media/upload"
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"

        def form() -> aiohttp.FormData:
            body = aiohttp.FormData()
            body.add_field("media", data, filename=filename, content_type=content_type)
            return body

        result = await self._call("POST", path, data=form, params={"type": "image"})
        return str(_field(result, "media_id", path))

    async def create_qrcode_str_scene(
        self, scene: str, expire_seconds: int | None
    ) -> dict[str, Any]:
        """A parametric QR code: permanent when expire_seconds is None (100,000 per account).

        Returns WeChat's answer: `ticket`, `url` (the QR content) and for temporary codes
        `expire_seconds`.
        """
        if not 1 <= len(scene) <= 64:
            raise ValueError(f"QR scene {scene!r} has {len(scene)} characters; allowed 1–64")
        action_info = {"scene": {"scene_str": scene}}
        body: dict[str, Any]
        if expire_seconds is None:
            body = {"action_name": "QR_LIMIT_STR_SCENE", "action_info": action_info}
        else:
            if not 1 <= expire_seconds <= QR_MAX_EXPIRE:
                raise ValueError(
                    f"QR expire_seconds {expire_seconds} out of 1–{QR_MAX_EXPIRE} (30 days)"
                )
            body = {
                "expire_seconds": expire_seconds,
                "action_name": "QR_STR_SCENE",
                "action_info": action_info,
            }
        result = await self._call("POST", "/cgi-bin/qrcode/create", json=body)
        _field(result, "ticket", "/cgi-bin/qrcode/create")
        return result

    # -- menus and tags ----------------------------------------------------------------------

    async def create_menu(self, menu: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", "/cgi-bin/menu/create", json=menu)

    async def get_menu(self) -> dict[str, Any]:
        """The menus created through the API; `{}` when the account has none."""
        try:
            return await self._call("GET", "/cgi-bin/menu/get")
        except PermanentError as exc:
            # "menu no exist" is an answer, not a failure, for `healthbot menu sync`
            if exc.errcode == _MENU_MISSING:
                return {}
            raise

    async def create_tag(self, name: str) -> int:
        """Create a user tag (for conditional menus); returns its id."""
        if not 1 <= len(name) <= 30:
            raise ValueError(f"tag name {name!r} has {len(name)} characters; allowed 1–30")
        path = "/cgi-bin/tags/create"
        result = await self._call("POST", path, json={"tag": {"name": name}})
        tag = _field(result, "tag", path)
        if not isinstance(tag, Mapping):
            raise network_error(path, "invalid_response", "answer's 'tag' is not an object")
        return int(_field(tag, "id", path))

    async def get_tags(self) -> dict[str, int]:
        """The account's user tags, name → id."""
        path = "/cgi-bin/tags/get"
        tags = _field(await self._call("GET", path), "tags", path)
        if not isinstance(tags, list):
            raise network_error(path, "invalid_response", "answer's 'tags' is not a list")
        return {
            str(t["name"]): int(t["id"])
            for t in tags
            if isinstance(t, Mapping) and "name" in t and "id" in t
        }

    async def tag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        await self._members("/cgi-bin/tags/members/batchtagging", tag_id, openids)

    async def untag_users(self, tag_id: int, openids: Sequence[str]) -> None:
        await self._members("/cgi-bin/tags/members/batchuntagging", tag_id, openids)

    async def _members(self, path: str, tag_id: int, openids: Sequence[str]) -> None:
        for start in range(0, len(openids), TAG_BATCH):
            batch = list(openids[start : start + TAG_BATCH])
            await self._call("POST", path, json={"openid_list": batch, "tagid": tag_id})

    async def tagged_users(self, tag_id: int) -> list[str]:
        """The followers with the tag (/cgi-bin/user/tag/get, 10,000 a page)."""
        path = "/cgi-bin/user/tag/get"
        found: list[str] = []
        after = ""
        for _page in range(1000):  # 10 million followers: a bound on a misbehaving answer
            result = await self._call("POST", path, json={"tagid": tag_id, "next_openid": after})
            data = result.get("data") if isinstance(result, Mapping) else None
            page = data.get("openid") if isinstance(data, Mapping) else None
            if not isinstance(page, list) or not page:
                break
            found += [str(openid) for openid in page]
            after = str(result.get("next_openid") or "")
            if not after:
                break
        return found

    async def add_conditional_menu(self, menu: Mapping[str, Any]) -> str:
        """Add a menu shown to users matching `menu["matchrule"]`; returns its menuid."""
        path = "/cgi-bin/menu/addconditional"
        result = await self._call("POST", path, json=menu)
        return str(_field(result, "menuid", path))

    async def delete_conditional_menu(self, menuid: str) -> None:
        await self._call("POST", "/cgi-bin/menu/delconditional", json={"menuid": menuid})
