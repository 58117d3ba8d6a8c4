"""What every emulated API endpoint shares: WeChat-style JSON in and out."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from aiohttp import web

from simulator.errors import ApiError

_dumps = partial(json.dumps, ensure_ascii=False)


def wechat_json(body: dict[str, Any]) -> web.Response:
    # WeChat answers errors with HTTP 200 too; only errcode tells them apart.
    return web.json_response(body, dumps=_dumps)


def ok(**extra: Any) -> web.Response:
    return wechat_json({"errcode": 0, "errmsg": "ok", **extra})


async def read_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise ApiError(44002)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(47001, f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(47001, "body must be a JSON object")
    return body


def api_path(request: web.Request) -> str:
    """The path as WeChat names it ("/cgi-bin/token"), wherever the simulator is mounted."""
    path = request.path
    index = path.find("/cgi-bin/")
    return path[index:] if index >= 0 else path
