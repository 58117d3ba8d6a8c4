"""/cgi-bin/user/info and the tag endpoints."""

from __future__ import annotations

from aiohttp import web

from simulator.api.common import ok, read_json, wechat_json
from simulator.errors import ApiError
from simulator.keys import STATE
from simulator.state import SimulatorState
from simulator.tags import Tag
from simulator.users import User

routes = web.RouteTableDef()
MAX_BATCH = 50
TAG_PAGE = 10_000


@routes.get("/cgi-bin/user/info")
async def user_info(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    openid = request.query.get("openid")
    if not openid:
        raise ApiError(40003, "openid is required")
    return wechat_json(state.users.require(openid).info())


@routes.post("/cgi-bin/tags/create")
async def create_tag(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await read_json(request)
    tag = body.get("tag")
    if not isinstance(tag, dict):
        raise ApiError(47001, 'expected {"tag": {"name": ...}}')
    created = state.tags.create(tag.get("name"))
    return wechat_json({"tag": {"id": created.id, "name": created.name}})


@routes.get("/cgi-bin/tags/get")
async def list_tags(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    users = state.users.all()
    tags = [
        {"id": t.id, "name": t.name, "count": sum(t.id in u.tags for u in users)}
        for t in state.tags.all()
    ]
    return wechat_json({"tags": tags})


@routes.post("/cgi-bin/tags/members/batchtagging")
async def batch_tag(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    tag, users = await _batch(request, state)
    state.tags.attach(tag, users)
    state.log.notify_all("menu")  # a tag can change which conditional menu a user sees
    return ok()


@routes.post("/cgi-bin/tags/members/batchuntagging")
async def batch_untag(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    tag, users = await _batch(request, state)
    state.tags.detach(tag, users)
    state.log.notify_all("menu")
    return ok()


@routes.post("/cgi-bin/user/tag/get")
async def tagged_users(request: web.Request) -> web.Response:
    """The followers with a tag, 10,000 a page, after `next_openid`."""
    state = request.config_dict[STATE]
    body = await read_json(request)
    tag = state.tags.require(body.get("tagid"))
    after = body.get("next_openid") or ""
    openids = sorted(u.openid for u in state.users.all() if tag.id in u.tags)
    page = [o for o in openids if o > after][:TAG_PAGE]
    more = len(page) == TAG_PAGE and page[-1] != openids[-1]
    return wechat_json(
        {
            "count": len(page),
            "data": {"openid": page},
            "next_openid": page[-1] if more else "",
        }
    )


async def _batch(request: web.Request, state: SimulatorState) -> tuple[Tag, list[User]]:
    body = await read_json(request)
    openids = body.get("openid_list")
    if not isinstance(openids, list) or not 1 <= len(openids) <= MAX_BATCH:
        raise ApiError(40032, f"openid_list must hold 1–{MAX_BATCH} openids")
    tag = state.tags.require(body.get("tagid"))
    return tag, [state.users.require(openid) for openid in openids]
