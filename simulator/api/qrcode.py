"""/cgi-bin/qrcode/create and /cgi-bin/showqrcode: parametric QR codes."""

from __future__ import annotations

import asyncio

from aiohttp import web

from simulator.api.common import read_json, wechat_json
from simulator.keys import STATE
from simulator.qr import parse_create

routes = web.RouteTableDef()


@routes.post("/cgi-bin/qrcode/create")
async def create(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    ticket = state.qr.create(parse_create(await read_json(request)))
    return wechat_json(ticket.create_response())


@routes.get("/cgi-bin/showqrcode")
async def show(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    ticket = state.qr.by_ticket(request.query.get("ticket", ""))
    if ticket is None or ticket.expired(state.clock.time()):
        # Like mp.weixin.qq.com: no JSON here, just no image.
        raise web.HTTPNotFound(text="unknown or expired ticket (URL-encode it: it is base64)")
    png = await asyncio.to_thread(state.qr.png, ticket)
    return web.Response(body=png, content_type="image/png")
