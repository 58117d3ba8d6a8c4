"""/cgi-bin/menu/*: the custom menu and conditional menus."""

from __future__ import annotations

from aiohttp import web

from simulator.api.common import ok, read_json, wechat_json
from simulator.errors import ApiError
from simulator.keys import STATE
from simulator.state import SimulatorState

routes = web.RouteTableDef()

_RULE_FIELDS = frozenset(
    {"tag_id", "sex", "country", "province", "city", "client_platform_type", "language"}
)


@routes.post("/cgi-bin/menu/create")
async def create(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    state.menus.create(body.get("button"))
    state.log.notify_all("menu")
    return ok()


@routes.get("/cgi-bin/menu/get")
async def get(request: web.Request) -> web.Response:
    return wechat_json(request.config_dict[STATE].menus.snapshot())


@routes.get("/cgi-bin/menu/delete")
async def delete(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    state.menus.delete()
    state.log.notify_all("menu")
    return ok()


@routes.post("/cgi-bin/menu/addconditional")
async def add_conditional(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    if state.menus.default is None:
        raise ApiError(65303)
    menuid = state.menus.add_conditional(body.get("button"), _matchrule(state, body))
    state.log.notify_all("menu")
    return wechat_json({"menuid": str(menuid)})


@routes.post("/cgi-bin/menu/delconditional")
async def del_conditional(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    state.menus.delete_conditional(body.get("menuid"))
    state.log.notify_all("menu")
    return ok()


def _matchrule(state: SimulatorState, body: dict[str, object]) -> dict[str, str]:
    rule = body.get("matchrule")
    if not isinstance(rule, dict):
        raise ApiError(65304)
    kept = {k: str(v) for k, v in rule.items() if k in _RULE_FIELDS and v not in (None, "")}
    if not kept:
        raise ApiError(65304)
    if "tag_id" in kept:
        state.tags.require(kept["tag_id"])
    return kept
