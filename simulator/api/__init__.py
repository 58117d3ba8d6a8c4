"""The emulated WeChat API, an aiohttp app mounted at `api/` inside the simulator."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from simulator.api import control, media, menus, messages, qrcode, tokens, users
from simulator.api.common import api_path, wechat_json
from simulator.errors import ApiError
from simulator.keys import STATE

# Endpoints that take no access_token (showqrcode lives on mp.weixin.qq.com, open to anyone).
_TOKENLESS = frozenset({"/cgi-bin/token", "/cgi-bin/stable_token", "/cgi-bin/showqrcode"})


@web.middleware
async def _as_wechat(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count, delay, inject faults and check the token before any /cgi-bin/ handler runs."""
    path = api_path(request)
    if not path.startswith("/cgi-bin/"):
        return await handler(request)
    state = request.config_dict[STATE]
    state.calls[path] += 1
    delay = state.faults.delay_for(path)
    if delay:
        await asyncio.sleep(delay)
    try:
        injected = state.faults.take_error(path)
        if injected is not None:
            raise ApiError(injected, "injected")
        if path not in _TOKENLESS:
            state.tokens.verify(request.query.get("access_token"))
            state.quotas.spend(path)
        return await handler(request)
    except ApiError as exc:
        return wechat_json(exc.body())


def create_api_app() -> web.Application:
    app = web.Application(middlewares=[_as_wechat])
    for module in (tokens, messages, media, qrcode, menus, users, control):
        app.router.add_routes(module.routes)
    return app
