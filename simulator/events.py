"""`chat/events`: one server-sent-event stream per openid, so pushes appear live."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from simulator.chat import find_user, parse_after
from simulator.keys import STATE

routes = web.RouteTableDef()

HEARTBEAT = 15.0  # seconds; lets proxies and the server notice a closed page


@routes.get("/chat/events")
async def events(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[STATE]
    user = find_user(state, request.query.get("openid"))
    # A reconnecting EventSource says where it stopped; a fresh one may say `after=`.
    last = parse_after(request.headers.get("Last-Event-ID") or request.query.get("after"))
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    # Subscribe before replaying, so nothing said in between is lost; ids drop doubles.
    queue = state.log.subscribe(user.openid)
    try:
        await response.write(b"retry: 2000\n\n")
        for entry in state.log.entries(user.openid, last):
            await response.write(_event("message", entry.id, entry.to_json()))
            last = entry.id
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item == "close":
                break
            if item == "menu":
                await response.write(b"event: menu\ndata: {}\n\n")
            elif not isinstance(item, str) and item.id > last:
                await response.write(_event("message", item.id, item.to_json()))
                last = item.id
    except ConnectionResetError:
        pass  # the page went away
    finally:
        state.log.unsubscribe(user.openid, queue)
    return response


def _event(name: str, event_id: int, data: object) -> bytes:
    payload = json.dumps(data, ensure_ascii=False)
    return f"event: {name}\nid: {event_id}\ndata: {payload}\n\n".encode()
