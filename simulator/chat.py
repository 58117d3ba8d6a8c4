"""The chat page's JSON endpoints under `chat/`: who am I, what do I see, and what I do."""

from __future__ import annotations

import urllib.parse
from typing import Any

from aiohttp import web

from simulator.errors import ApiError
from simulator.httperrors import bad_request, json_object
from simulator.keys import STATE
from simulator.personas import PersonaError, fetch_personas, stranger_openid
from simulator.phone import Action, Click, Follow, Rejected, Scan, SendText, Unfollow, View, act
from simulator.state import SimulatorState
from simulator.users import User

routes = web.RouteTableDef()

MAX_TEXT = 2000
MAX_SCANNABLE_IMAGES = 60


@routes.get("/chat/config")
async def config(request: web.Request) -> web.Response:
    cfg = request.config_dict[STATE].config
    return web.json_response(
        {"account_name": cfg.account_name, "gh_id": cfg.gh_id, "safe_mode": cfg.safe_mode}
    )


@routes.get("/chat/personas")
async def personas(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    url = state.config.personas_url
    if url is None:
        return web.json_response({"personas": []})
    try:
        found = await fetch_personas(state.callback.session, url, state.config.appid)
    except PersonaError as exc:
        # Keep offering the last list we had, so a restarting bot doesn't empty the page.
        cached = [p.to_json() for p in state.personas.values()]
        return web.json_response({"personas": cached, "error": str(exc)}, status=502)
    state.personas = {p.openid: p for p in found}
    for persona in found:
        state.users.add(persona.openid, following=True)
    return web.json_response({"personas": [p.to_json() for p in found]})


@routes.post("/chat/stranger")
async def stranger(request: web.Request) -> web.Response:
    user = request.config_dict[STATE].users.add(stranger_openid(), following=False)
    return web.json_response({"openid": user.openid})


@routes.get("/chat/user")
async def user(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    found = find_user(state, request.query.get("openid"))
    persona = state.personas.get(found.openid)
    tags = {t.id: t.name for t in state.tags.all()}
    return web.json_response(
        {
            "openid": found.openid,
            "following": found.following,
            "tags": [tags[t] for t in sorted(found.tags) if t in tags],
            "persona": persona.to_json() if persona else None,
            "menu": state.menus.for_user(found.tags, found.language),
        }
    )


@routes.get("/chat/log")
async def log(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    found = find_user(state, request.query.get("openid"))
    after = parse_after(request.query.get("after"))
    entries = state.log.entries(found.openid, after)
    return web.json_response({"entries": [e.to_json() for e in entries]})


@routes.post("/chat/send")
async def send(request: web.Request) -> web.Response:
    state = request.config_dict[STATE]
    body = await json_object(request)
    sender = find_user(state, body.get("openid"))
    action = _action(state, body)
    try:
        outcome = await act(state, sender, action)
    except Rejected as exc:
        raise bad_request(str(exc), web.HTTPConflict) from exc
    delivery = outcome.delivery.to_json() if outcome.delivery else None
    return web.json_response(
        {"entries": [e.to_json() for e in outcome.entries], "delivery": delivery}
    )


@routes.get("/chat/scannables")
async def scannables(request: web.Request) -> web.Response:
    """Every QR a phone could point at: images the bot sent anyone, and place posters."""
    state = request.config_dict[STATE]
    images: list[dict[str, Any]] = []
    seen: set[str] = set()
    for entry in sorted(state.log.all_entries(), key=lambda e: -e.id):
        media_id = entry.message.media_id
        if entry.message.direction != "out" or not media_id or media_id in seen:
            continue
        seen.add(media_id)
        persona = state.personas.get(entry.openid)
        images.append(
            {
                "media_id": media_id,
                "openid": entry.openid,
                "name": persona.name if persona else entry.openid[:8] + "…",
                "at": entry.at,
                "src": "media/" + urllib.parse.quote(media_id),
            }
        )
        if len(images) >= MAX_SCANNABLE_IMAGES:
            break
    posters = [
        {
            "ticket": t.ticket,
            "scene": t.scene,
            "permanent": t.expires_at is None,
            "src": "api/cgi-bin/showqrcode?ticket=" + urllib.parse.quote(t.ticket, safe=""),
        }
        for t in sorted(state.qr.live(), key=lambda t: t.scene)
    ]
    return web.json_response({"images": images, "posters": posters})


def find_user(state: SimulatorState, openid: object) -> User:
    found = state.users.get(openid) if isinstance(openid, str) else None
    if found is None:
        raise bad_request(
            f"unknown openid {openid!r}: pick a persona or create a stranger first",
            web.HTTPNotFound,
        )
    return found


def parse_after(raw: str | None) -> int:
    try:
        return max(0, int(raw or 0))
    except ValueError as exc:
        raise bad_request(f"after {raw!r} is not an entry id") from exc


def _action(state: SimulatorState, body: dict[str, Any]) -> Action:
    kind = body.get("type")
    if kind == "text":
        content = body.get("content")
        if not isinstance(content, str) or not content.strip() or len(content) > MAX_TEXT:
            raise bad_request(f"content must be 1–{MAX_TEXT} characters")
        menu_id = body.get("menu_id")
        if menu_id is not None and not isinstance(menu_id, str):
            raise bad_request("menu_id must be a string (the msgmenuid of a tapped option)")
        return SendText(content, menu_id)
    if kind == "click":
        return Click(_string(body, "key"))
    if kind == "view":
        return View(_string(body, "url"))
    if kind == "subscribe":
        return Follow()
    if kind == "unsubscribe":
        return Unfollow()
    if kind == "scan":
        via = body.get("via", "camera")
        if via not in ("camera", "button"):
            raise bad_request(f"via {via!r} is not camera or button")
        key = _string(body, "key") if via == "button" else None
        return Scan(_scan_image(state, body), key)
    raise bad_request(f"unknown type {kind!r} (text, click, view, scan, subscribe, unsubscribe)")


def _scan_image(state: SimulatorState, body: dict[str, Any]) -> bytes:
    media_id, ticket = body.get("media_id"), body.get("ticket")
    if isinstance(media_id, str) and media_id:
        try:
            return state.media.get(media_id).data
        except ApiError as exc:
            raise bad_request(f"no image {media_id!r}", web.HTTPNotFound) from exc
    if isinstance(ticket, str) and ticket:
        found = state.qr.by_ticket(ticket)
        if found is None:
            raise bad_request(f"no poster with ticket {ticket!r}", web.HTTPNotFound)
        return state.qr.png(found)
    raise bad_request("scan needs media_id (an image the bot sent) or ticket (a poster)")


def _string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a non-empty string")
    return value
