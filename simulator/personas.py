"""Personas read from the bot's persona endpoint, and the openids the simulator gives people."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

FETCH_TIMEOUT = 5.0


class PersonaError(Exception):
    """The persona endpoint did not answer with the documented shape."""


@dataclass(frozen=True, slots=True)
class Persona:
    key: str
    person_no: str
    name: str
    category: str
    roles: tuple[str, ...]
    unit: str
    bind_hint: str
    openid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "person_no": self.person_no,
            "name": self.name,
            "category": self.category,
            "roles": list(self.roles),
            "unit": self.unit,
            "bind_hint": self.bind_hint,
            "openid": self.openid,
        }


def persona_openid(appid: str, person_no: str) -> str:
    """Stable per (account, person), so a restarted demo keeps everyone's binding."""
    digest = hashlib.sha1(f"{appid}:{person_no}".encode(), usedforsecurity=False).digest()
    return ("o" + base64.urlsafe_b64encode(digest).decode().rstrip("="))[:28]


def stranger_openid() -> str:
    return "o" + secrets.token_urlsafe(21)[:27]


def parse_personas(payload: object, appid: str) -> list[Persona]:
    items = payload.get("personas") if isinstance(payload, dict) else None
    if not isinstance(items, list):
        raise PersonaError('expected {"personas": [...]}')
    personas = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PersonaError(f"personas[{index}] is not an object")
        person_no = _text(item, "person_no", index, required=True)
        roles = item.get("roles") or []
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise PersonaError(f"personas[{index}].roles must be a list of strings")
        personas.append(
            Persona(
                key=_text(item, "key", index) or person_no,
                person_no=person_no,
                name=_text(item, "name", index, required=True),
                category=_text(item, "category", index),
                roles=tuple(roles),
                unit=_text(item, "unit", index),
                bind_hint=_text(item, "bind_hint", index),
                openid=persona_openid(appid, person_no),
            )
        )
    return personas


def _text(item: dict[str, Any], name: str, index: int, *, required: bool = False) -> str:
    value = item.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise PersonaError(f"personas[{index}].{name} must be a non-empty string")
    return value


async def fetch_personas(session: aiohttp.ClientSession, url: str, appid: str) -> list[Persona]:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT)) as resp:
            if resp.status != 200:
                raise PersonaError(f"{url} answered HTTP {resp.status}")
            payload = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise PersonaError(f"{url} failed: {exc or type(exc).__name__}") from exc
    return parse_personas(payload, appid)
