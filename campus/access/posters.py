"""Place posters: the scene string of a place's WeChat QR code, and where each code points."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Place, PlacePoster

SCENE_PREFIX = "place:"
SUBSCRIBE_PREFIX = "qrscene_"
MAX_SCENE = 64


class UnknownPlace(LookupError):
    pass


def scene_for(code: str) -> str:
    scene = SCENE_PREFIX + code
    if len(scene) > MAX_SCENE:
        raise ValueError(
            f"place code {code!r} is too long for a QR scene ({len(scene)} > {MAX_SCENE} chars)"
        )
    return scene


def place_code(event_key: str) -> str | None:
    """The place code in a SCAN key (`place:X`) or a subscribe key (`qrscene_place:X`)."""
    if event_key.startswith(SUBSCRIBE_PREFIX):
        event_key = event_key[len(SUBSCRIBE_PREFIX) :]
    if not event_key.startswith(SCENE_PREFIX):
        return None
    return event_key[len(SCENE_PREFIX) :] or None


class PosterBook:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def place(self, code: str) -> Place:
        async with self._sessions() as session:
            place = (
                await session.execute(select(Place).where(Place.code == code))
            ).scalar_one_or_none()
        if place is None:
            raise UnknownPlace(f"no place with code {code!r}")
        return place

    async def remember(self, place_id: int, scene: str, ticket: str, url: str) -> None:
        async with self._sessions.begin() as session:
            poster = await session.get(PlacePoster, place_id)
            if poster is None:
                session.add(PlacePoster(place_id=place_id, scene=scene, ticket=ticket, url=url))
            else:
                poster.scene, poster.ticket, poster.url = scene, ticket, url

    async def place_for_url(self, url: str) -> int | None:
        """The place whose poster QR code says `url` (a guard scanned it with VERIFY)."""
        if not url.startswith(("http://", "https://")) or len(url) > 255:
            return None
        async with self._sessions() as session:
            return (
                await session.execute(select(PlacePoster.place_id).where(PlacePoster.url == url))
            ).scalar_one_or_none()
