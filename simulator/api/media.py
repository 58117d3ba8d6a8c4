"""/cgi-bin/media/upload and /cgi-bin/media/get: temporary images."""

from __future__ import annotations

import asyncio

from aiohttp import BodyPartReader, web

from simulator.api.common import wechat_json
from simulator.errors import ApiError
from simulator.keys import STATE
from simulator.media import MAX_IMAGE_BYTES, image_content_type

routes = web.RouteTableDef()

_KNOWN_TYPES = frozenset({"image", "voice", "video", "thumb"})


@routes.post("/cgi-bin/media/upload")
async def upload(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    kind = request.query.get("type")
    if kind not in _KNOWN_TYPES:
        raise ApiError(40004, f"type {kind!r}")
    if kind != "image":
        raise ApiError(40004, f"the simulator stores images only, not {kind}")
    data = await _media_field(request)
    content_type = await asyncio.to_thread(image_content_type, data)
    media = state.media.add(kind, content_type, data)
    return wechat_json({"type": kind, "media_id": media.media_id, "created_at": media.created_at})


async def _media_field(request: web.Request) -> bytes:
    """The `media` part's bytes, read in chunks so an oversized upload stops early."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError(41005, "expected multipart/form-data with a 'media' field")
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name != "media":
                continue
            chunks, size = [], 0
            while chunk := await part.read_chunk(64 * 1024):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise ApiError(40009, f"over {MAX_IMAGE_BYTES} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except (ValueError, AssertionError) as exc:
        raise ApiError(41005, f"unreadable multipart body: {exc}") from exc
    raise ApiError(41005, "no 'media' field")


@routes.get("/cgi-bin/media/get")
async def get(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[STATE]
    media_id = request.query.get("media_id")
    if not media_id:
        raise ApiError(41006)
    media = state.media.get(media_id)
    return web.Response(
        body=media.data,
        content_type=media.content_type,
        headers={"Content-Disposition": f'attachment; filename="{media.media_id[:16]}.img"'},
    )
