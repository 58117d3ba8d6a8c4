"""The chat page itself: its HTML, static files, and the images it shows."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from simulator.errors import ApiError
from simulator.httperrors import bad_request
from simulator.keys import STATE

STATIC = Path(__file__).parent / "static"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@routes.get("/media/{media_id}")
async def media(request: web.Request) -> web.Response:
    """An image for the page (the page has no access_token, unlike media/get callers)."""
    state = request.config_dict[STATE]
    try:
        found = state.media.get(request.match_info["media_id"])
    except ApiError as exc:
        raise bad_request("no such image, or it expired", web.HTTPNotFound) from exc
    return web.Response(
        body=found.data,
        content_type=found.content_type,
        headers={"Cache-Control": "private, max-age=86400"},
    )


routes.static("/static/", STATIC)
