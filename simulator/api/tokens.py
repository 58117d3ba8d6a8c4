"""/cgi-bin/token and /cgi-bin/stable_token."""

from __future__ import annotations

from aiohttp import web

from simulator.api.common import read_json, wechat_json
from simulator.errors import ApiError
from simulator.keys import STATE

routes = web.RouteTableDef()


@routes.get("/cgi-bin/token")
async def token(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    query = request.query
    state.tokens.check_credentials(query.get("grant_type"), query.get("appid"), query.get("secret"))
    value, expires_in = state.tokens.issue()
    return wechat_json({"access_token": value, "expires_in": expires_in})


@routes.post("/cgi-bin/stable_token")
async def stable_token(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    state.tokens.check_credentials(body.get("grant_type"), body.get("appid"), body.get("secret"))
    force = body.get("force_refresh", False)
    if not isinstance(force, bool):
        raise ApiError(47001, f"force_refresh {force!r} is not a boolean")
    value, expires_in = state.tokens.stable(force)
    return wechat_json({"access_token": value, "expires_in": expires_in})
