"""The place tree in memory: gate decisions look places and ancestry up without a query.

Places change by CSV import only, so the whole tree (≈10,000 rows for a large campus) is
read once and re-read in the background when older than `ttl`; an unknown code triggers an
early re-read (at most once per `miss_every` seconds), so a newly imported place works
within seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Place


@dataclass(frozen=True, slots=True)
class PlaceInfo:
    id: int
    code: str
    name: str
    kind: str
    parent_id: int | None
    policy: str


class PlaceDirectory:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        monotonic: Callable[[], float],
        *,
        ttl: float = 60.0,
        miss_every: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._mono = monotonic
        self._ttl = ttl
        self._miss_every = miss_every
        self._by_id: dict[int, PlaceInfo] = {}
        self._by_code: dict[str, PlaceInfo] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def by_code(self, code: str) -> PlaceInfo | None:
        await self._fresh()
        place = self._by_code.get(code.upper()) or self._by_code.get(code)
        if place is None and self._age() >= self._miss_every:
            await self._load()
            place = self._by_code.get(code.upper()) or self._by_code.get(code)
        return place

    async def by_id(self, place_id: int) -> PlaceInfo | None:
        await self._fresh()
        place = self._by_id.get(place_id)
        if place is None and self._age() >= self._miss_every:
            await self._load()
            place = self._by_id.get(place_id)
        return place

    def within(self, inner_id: int, outer_id: int) -> bool:
        """Whether place `inner_id` is `outer_id` or lies inside it."""
        seen = 0
        current: int | None = inner_id
        while current is not None and seen < 64:  # the importer refuses cycles; be safe anyway
            if current == outer_id:
                return True
            place = self._by_id.get(current)
            current = place.parent_id if place is not None else None
            seen += 1
        return False

    def invalidate(self) -> None:
        self._loaded_at = None

    def _age(self) -> float:
        return float("inf") if self._loaded_at is None else self._mono() - self._loaded_at

    async def _fresh(self) -> None:
        if self._loaded_at is None:
            await self._load()
        elif self._age() >= self._ttl and self._refreshing is None:
            # Serve the current tree while a fresh copy loads.
            self._refreshing = asyncio.create_task(self._background())

    async def _background(self) -> None:
        try:
            await self._load()
        finally:
            self._refreshing = None

    async def _load(self) -> None:
        async with self._lock:
            if self._loaded_at is not None and self._age() < min(self._miss_every, self._ttl):
                return  # someone else just loaded it
            stmt = select(
                Place.id, Place.code, Place.name, Place.kind, Place.parent_id, Place.policy
            )
            async with self._sessions() as session:
                rows = (await session.execute(stmt)).all()
            by_id = {
                r.id: PlaceInfo(r.id, r.code, r.name, r.kind, r.parent_id, r.policy) for r in rows
            }
            self._by_id = by_id
            self._by_code = {p.code: p for p in by_id.values()}
            self._loaded_at = self._mono()
