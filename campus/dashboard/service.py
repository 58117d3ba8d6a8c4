"""Who may open the dashboard, the signed link that opens it, and the view it opens.

The chat command signs a link (kind `dashboard`, 15 minutes) whose claims carry ids only: the
person, their units (or `all`) and the language. Opening it verifies the link, then re-reads
the person: the view shows the link's units *and* what the person may see now, so a role or
unit taken away is in force at the next page view, not 15 minutes later. Every view is
audited, and so is every person whose (masked) name a view lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from campus import audit
from campus.dashboard.figures import Dashboard, Focus, build
from campus.dashboard.history import DailyReports
from campus.dashboard.units import UnitIndex, responsible_units
from campus.health.days import campus_day
from campus.health.days import now as clock_now
from campus.links import BadLink, Link, LinkSigner
from storage.models import Person

KIND = "dashboard"
TTL = timedelta(minutes=15)
# Roles that see every unit: admins run the campus, health officers act campus-wide
# (overrides, tracing, clearances). Responsible persons see the units they answer for.
CAMPUS_WIDE = frozenset({"admin", "health_officer"})
VIEWER_ROLES = CAMPUS_WIDE | {"responsible"}
ALL = "all"
LOCALES = ("zh_CN", "en")


class Refusal(Enum):
    NOT_ALLOWED = "not_allowed"  # no viewer role (any more), or not active
    NO_UNITS = "no_units"  # responsible for no unit
    UNKNOWN_UNIT = "unknown_unit"  # a drill-down outside the scope, or no such unit


class DashboardRefused(Exception):
    def __init__(self, reason: Refusal) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Offer:
    url: str
    expires_at: datetime  # aware, UTC


@dataclass(frozen=True, slots=True)
class View:
    dashboard: Dashboard
    token: str
    locale: str
    person_id: int
    tops: tuple[tuple[str, str], ...]  # (code, name) of the scope's top units
    focus_code: str | None
    expires_at: datetime
    campus_wide: bool  # the viewer may see every unit


@dataclass(frozen=True, slots=True)
class _Viewer:
    person_id: int
    units: frozenset[int] | None  # None: every unit


class DashboardService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signer: LinkSigner,
        clock: Clock,
        tz: ZoneInfo,
        public_url: str,
    ) -> None:
        self._sessions = sessions
        self._signer = signer
        self._clock = clock
        self._tz = tz
        self._base = public_url.rstrip("/")
        self._history = DailyReports()

    def today(self) -> date:
        return campus_day(clock_now(self._clock), self._tz)

    def now(self) -> datetime:
        return clock_now(self._clock)

    def local(self, at: datetime) -> datetime:
        return at.astimezone(self._tz)

    # -- the link ------------------------------------------------------------------------------

    async def offer(self, person_id: int, locale: str) -> Offer:
        """A signed link for this person, or DashboardRefused."""
        async with self._sessions() as session:
            viewer = await self._viewer(session, person_id)
        units: Any = ALL if viewer.units is None else sorted(viewer.units)
        now = clock_now(self._clock)
        token = self._signer.sign(KIND, {"p": person_id, "u": units, "l": locale}, now, TTL)
        return Offer(self.url(token), now + TTL)

    def url(self, token: str) -> str:
        return f"{self._base}/dashboard{self.query(token)}"

    @staticmethod
    def query(token: str, unit: str | None = None, locale: str | None = None) -> str:
        """The page's own links are relative (`?t=…`), so they work behind any proxy path."""
        params = {"t": token}
        if unit:
            params["u"] = unit
        if locale:
            params["lang"] = locale
        return f"?{urlencode(params)}"

    def verify(self, token: str) -> Link:
        """The link's claims, or BadLink (malformed, forged, wrong kind, expired)."""
        link = self._signer.verify(token, KIND, clock_now(self._clock))
        claims = link.claims
        units = claims.get("u")
        scoped = units == ALL or (
            isinstance(units, list) and all(isinstance(u, int) for u in units)
        )
        if not isinstance(claims.get("p"), int) or not scoped or claims.get("l") not in LOCALES:
            raise BadLink("malformed")
        return link

    # -- the view ------------------------------------------------------------------------------

    async def open(self, token: str, unit_code: str | None = None) -> View:
        """The dashboard a link opens (at `unit_code`, or the top of its scope).

        BadLink for a bad link; DashboardRefused when the person may no longer look, or the
        unit is outside what they may see.
        """
        link = self.verify(token)
        person_id = int(link.claims["p"])
        claimed = link.claims["u"]
        today = self.today()
        async with self._sessions.begin() as session:
            viewer = await self._viewer(session, person_id)
            index = await UnitIndex.load(session)
            visible = _intersect(
                None if claimed == ALL else index.covering(claimed),
                None if viewer.units is None else index.covering(viewer.units),
            )
            if visible is not None and not visible:
                raise DashboardRefused(Refusal.NO_UNITS)
            tops = tuple(index.roots if visible is None else index.top_of(visible))
            focus_id = _focus(index, visible, tops, unit_code)
            focus = Focus(focus_id, tops, everything=visible is None)
            dashboard = await build(
                session, index, focus, today, self._tz, history=self._history, now=self.now()
            )
            actor = f"person:{person_id}"
            audit.record(
                session,
                actor,
                "dashboard",
                None,
                f"unit {index.units[focus_id].code}" if focus_id is not None else "top",
            )
            for subject in sorted({w.person_id for w in dashboard.warnings}):
                audit.record(session, actor, "read", subject, "dashboard: open warnings")
        return View(
            dashboard=dashboard,
            token=token,
            locale=str(link.claims["l"]),
            person_id=person_id,
            tops=tuple((index.units[u].code, index.units[u].name) for u in tops),
            focus_code=index.units[focus_id].code if focus_id is not None else None,
            expires_at=link.expires_at,
            campus_wide=visible is None,
        )

    async def overview(self, unit_code: str | None = None) -> Dashboard:
        """The whole campus (or one unit) for an operator's terminal: `healthbot stats`."""
        async with self._sessions() as session:
            index = await UnitIndex.load(session)
            tops = tuple(index.roots)
            focus_id = _focus(index, None, tops, unit_code)
            focus = Focus(focus_id, tops, everything=True)
            return await build(
                session, index, focus, self.today(), self._tz, history=self._history, now=self.now()
            )

    async def _viewer(self, session: AsyncSession, person_id: int) -> _Viewer:
        row = (
            await session.execute(
                select(Person.person_no, Person.roles, Person.state).where(Person.id == person_id)
            )
        ).first()
        if row is None or row.state != "active":
            raise DashboardRefused(Refusal.NOT_ALLOWED)
        roles = frozenset(r for r in row.roles.split(";") if r)
        if roles & CAMPUS_WIDE:
            return _Viewer(person_id, None)
        if "responsible" not in roles:
            raise DashboardRefused(Refusal.NOT_ALLOWED)
        units = await responsible_units(session, row.person_no)
        if not units:
            raise DashboardRefused(Refusal.NO_UNITS)
        return _Viewer(person_id, frozenset(units))


def _intersect(a: set[int] | None, b: set[int] | None) -> set[int] | None:
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _focus(
    index: UnitIndex, visible: set[int] | None, tops: tuple[int, ...], unit_code: str | None
) -> int | None:
    if unit_code:
        unit = index.by_code.get(unit_code)
        if unit is None or (visible is not None and unit not in visible):
            raise DashboardRefused(Refusal.UNKNOWN_UNIT)
        return unit
    return tops[0] if len(tops) == 1 else None
