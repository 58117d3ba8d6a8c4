"""Helpers for the tracing tests (no tests here): a place tree, visits, the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus.links import LinkSigner
from campus.notifications import Notifications, Schedule
from campus.quiet_hours import QuietHours
from campus.tracing.incidents import IncidentService
from campus.tracing.rules import TracingRules
from campus.tracing.service import TraceService
from storage.models import AccessRecord, Place
from tests.health_support import SHANGHAI, Campus
from tests.support import DATA_KEY

# (code, kind, parent)
PLACES = [
    ("CAMPUS", "campus", None),
    ("GATE-N", "gate", "CAMPUS"),
    ("LIB", "library", "CAMPUS"),
    ("CANTEEN", "canteen", "CAMPUS"),
    ("DORM-1", "dorm", "CAMPUS"),
    ("DORM-1-101", "house", "DORM-1"),
    ("DORM-1-102", "house", "DORM-1"),
    ("DORM-2", "dorm", "CAMPUS"),
]


@dataclass
class Places:
    ids: dict[str, int] = field(default_factory=dict)


async def seed_places(sessions: async_sessionmaker[AsyncSession]) -> Places:
    places = Places()
    async with sessions.begin() as session:
        for code, kind, parent in PLACES:
            place = Place(
                code=code,
                name={"LIB": "图书馆", "CANTEEN": "一食堂"}.get(code, code),
                kind=kind,
                parent_id=places.ids[parent] if parent else None,
                policy="open",
            )
            session.add(place)
            await session.flush()
            places.ids[code] = place.id
    return places


def at(hour: int, minute: int) -> datetime:
    """That time on 2026-03-03 in Shanghai: the day before the tests' clock (03-04 10:00)."""
    return datetime(2026, 3, 3, hour, minute, tzinfo=SHANGHAI)


async def visit(
    c: Campus,
    places: Places,
    person_no: str | None,
    code: str,
    start: datetime,
    end: datetime | None = None,
    *,
    allowed: bool = True,
) -> None:
    """An entry at `start` (and an exit at `end`), as a self check-in writes them."""
    person_id = c.ids[person_no] if person_no else None
    async with c.sessions.begin() as session:
        for direction, when in [("in", start), ("out", end)]:
            if when is None:
                continue
            session.add(
                AccessRecord(
                    person_id=person_id,
                    place_id=places.ids[code],
                    direction=direction,
                    at=when,
                    allowed=allowed,
                    reason="" if allowed else "status",
                    method="self",
                )
            )


def tracing_service(c: Campus, rules: TracingRules | None = None) -> TraceService:
    return TraceService(
        c.sessions,
        rules or TracingRules(),
        c.clock,
        SHANGHAI,
        LinkSigner(DATA_KEY),
        "http://127.0.0.1:8080/",
    )


def incident_service(c: Campus) -> IncidentService:
    """Quiet hours on (22:30–07:00): incident pushes must ignore them."""
    notifications = Notifications(c.sessions, Schedule(QuietHours(), SHANGHAI))
    return IncidentService(
        c.sessions, tracing_service(c), c.kit.rules, c.kit.warnings, notifications, SHANGHAI
    )
