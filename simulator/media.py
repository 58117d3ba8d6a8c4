"""Temporary media (/cgi-bin/media/upload and get): images the bot uploads to send."""

from __future__ import annotations

import io
import secrets
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from simulator.clock import Clock
from simulator.errors import ApiError

MAX_IMAGE_BYTES = 10 * 1024 * 1024
LIFETIME = 3 * 86400
CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "BMP": "image/bmp"}


@dataclass(frozen=True, slots=True)
class Media:
    media_id: str
    kind: str
    content_type: str
    data: bytes
    created_at: int


def image_content_type(data: bytes) -> str:
    """The MIME type of an image WeChat takes, else ApiError 40005/40009 (CPU-bound)."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError(40009, f"{len(data)} bytes is over {MAX_IMAGE_BYTES}")
    if not data:
        raise ApiError(41005, "the media field is empty")
    try:
        with warnings.catch_warnings():
            # A decompression-bomb warning is just a bad upload here, not a test failure.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format = image.format or ""
                image.verify()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombWarning) as exc:
        raise ApiError(40005, f"not an image: {exc}") from exc
    content_type = CONTENT_TYPES.get(image_format)
    if content_type is None:
        raise ApiError(40005, f"image format {image_format!r} is not jpg/png/gif/bmp")
    return content_type


class MediaStore:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._items: dict[str, Media] = {}

    def add(self, kind: str, content_type: str, data: bytes) -> Media:
        now = int(self._clock.time())
        self._forget_expired(now)
        media = Media(secrets.token_urlsafe(48), kind, content_type, data, now)
        self._items[media.media_id] = media
        return media

    def get(self, media_id: object) -> Media:
        media = self._items.get(media_id) if isinstance(media_id, str) else None
        if media is None or self._clock.time() - media.created_at >= LIFETIME:
            raise ApiError(40007, f"media_id {media_id!r}")
        return media

    def _forget_expired(self, now: int) -> None:
        stale = [m for m, item in self._items.items() if now - item.created_at >= LIFETIME]
        for media_id in stale:
            del self._items[media_id]
