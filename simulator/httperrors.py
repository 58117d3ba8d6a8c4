"""4xx answers for the simulator's own endpoints: JSON with the reason."""

from __future__ import annotations

import json

from aiohttp import web


def bad_request(
    reason: str, status: type[web.HTTPClientError] = web.HTTPBadRequest
) -> web.HTTPClientError:
    return status(
        text=json.dumps({"error": reason}, ensure_ascii=False), content_type="application/json"
    )


async def json_object(request: web.Request) -> dict[str, object]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise bad_request(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body
