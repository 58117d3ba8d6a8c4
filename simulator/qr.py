"""Parametric QR codes: tickets from /cgi-bin/qrcode/create, their images, and reading QR images."""

from __future__ import annotations

import base64
import io
import secrets
import string
from dataclasses import dataclass
from typing import Any

import qrcode
import zxingcpp
from PIL import Image, UnidentifiedImageError

from simulator.clock import Clock
from simulator.errors import ApiError

TEMPORARY = frozenset({"QR_SCENE", "QR_STR_SCENE"})
PERMANENT = frozenset({"QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"})
STRING_SCENES = frozenset({"QR_STR_SCENE", "QR_LIMIT_STR_SCENE"})
DEFAULT_EXPIRE, MAX_EXPIRE = 60, 30 * 86400
MAX_STR_SCENE = 64
MAX_LIMIT_SCENE_ID = 100_000
URL_PREFIX = "http://weixin.qq.com/q/"
_URL_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Ticket:
    ticket: str
    url: str
    scene: str  # scene_str, or scene_id as text: what EventKey carries
    action_name: str
    created_at: int
    expires_at: int | None  # None: permanent

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def create_response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ticket": self.ticket, "url": self.url}
        if self.expires_at is not None:
            body["expire_seconds"] = self.expires_at - self.created_at
        return body


@dataclass(frozen=True, slots=True)
class QrRequest:
    action_name: str
    scene: str
    expire_seconds: int | None


def parse_create(body: dict[str, Any]) -> QrRequest:
    """Check a /cgi-bin/qrcode/create body as WeChat does."""
    action = body.get("action_name")
    if action not in TEMPORARY | PERMANENT:
        raise ApiError(40053, f"action_name {action!r}")
    info = body.get("action_info")
    scene = info.get("scene") if isinstance(info, dict) else None
    if not isinstance(scene, dict):
        raise ApiError(40053, "action_info.scene is required")
    if action in STRING_SCENES:
        value = scene.get("scene_str")
        if not isinstance(value, str) or not 1 <= len(value) <= MAX_STR_SCENE:
            raise ApiError(40053, f"scene_str must be 1–{MAX_STR_SCENE} characters")
        scene_text = value
    else:
        number = scene.get("scene_id")
        top = MAX_LIMIT_SCENE_ID if action in PERMANENT else 2**32 - 1
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= top:
            raise ApiError(40053, f"scene_id must be an integer 1–{top}")
        scene_text = str(number)
    expire: int | None = None
    if action in TEMPORARY:
        raw = body.get("expire_seconds", DEFAULT_EXPIRE)
        if isinstance(raw, bool) or not isinstance(raw, int) or raw <= 0:
            raise ApiError(47001, f"expire_seconds {raw!r}")
        expire = min(raw, MAX_EXPIRE)  # WeChat caps longer requests at 30 days
    return QrRequest(action, scene_text, expire)


class QrStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._by_ticket: dict[str, Ticket] = {}
        self._by_url: dict[str, Ticket] = {}
        self._permanent: dict[tuple[str, str], Ticket] = {}
        self._png: dict[str, bytes] = {}

    def create(self, request: QrRequest) -> Ticket:
        key = (request.action_name, request.scene)
        if request.expire_seconds is None and key in self._permanent:
            return self._permanent[key]  # a permanent scene always has the same code
        now = int(self._clock.time())
        ticket = Ticket(
            # Real tickets are standard base64 ("+", "/", "="): clients must URL-encode them.
            ticket=base64.b64encode(secrets.token_bytes(45)).decode(),
            url=URL_PREFIX + "".join(secrets.choice(_URL_ALPHABET) for _ in range(22)),
            scene=request.scene,
            action_name=request.action_name,
            created_at=now,
            expires_at=None if request.expire_seconds is None else now + request.expire_seconds,
        )
        self._by_ticket[ticket.ticket] = ticket
        self._by_url[ticket.url] = ticket
        if ticket.expires_at is None:
            self._permanent[key] = ticket
        return ticket

    def by_ticket(self, ticket: str) -> Ticket | None:
        return self._by_ticket.get(ticket)

    def by_url(self, url: str) -> Ticket | None:
        return self._by_url.get(url)

    def live(self) -> list[Ticket]:
        now = self._clock.time()
        return [t for t in self._by_ticket.values() if not t.expired(now)]

    def png(self, ticket: Ticket) -> bytes:
        if ticket.ticket not in self._png:
            self._png[ticket.ticket] = render_png(ticket.url)
        return self._png[ticket.ticket]


def render_png(text: str) -> bytes:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(text)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image(fill_color="black", back_color="white").save(buffer, format="PNG")
    return buffer.getvalue()


def decode_qr(data: bytes) -> str | None:
    """The text of the QR code in an image, read like a phone camera would (CPU-bound)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            result = zxingcpp.read_barcode(
                image.convert("RGB"), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            )
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return result.text if result is not None and result.valid else None
