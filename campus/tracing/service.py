"""Tracing as the health officers and the operator use it: run a trace (audited), sign a
link to its full list, open that link again (audited each time), write it as CSV."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TextIO
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from campus import audit
from campus.links import BadLink, LinkSigner
from campus.tracing.query import Contact, Window, trace
from campus.tracing.rules import TracingRules
from storage.models import Person, Unit

OFFICER_ROLE = "health_officer"
LINK_KIND = "trace"
MAX_DAYS = 365
MAX_MARGIN = 24 * 60


class TraceRefused(Enum):
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_PERSON = "unknown_person"
    BAD_WINDOW = "bad_window"


@dataclass(frozen=True, slots=True)
class Case:
    person_id: int
    person_no: str
    name: str
    unit_id: int
    locale: str
    responsible_id: int | None
    status: str


@dataclass(frozen=True, slots=True)
class TraceResult:
    case: Case
    window: Window
    days: int
    margin_minutes: int
    contacts: list[Contact]
    units: dict[int, str]  # unit id -> name, for the contacts' units


async def find_case(session: AsyncSession, person_no: str) -> Case | None:
    stmt = select(
        Person.id,
        Person.person_no,
        Person.name,
        Person.unit_id,
        Person.locale,
        Person.responsible_id,
        Person.status,
    ).where(Person.person_no == person_no.strip().upper()[:64])
    row = (await session.execute(stmt)).first()
    return None if row is None else Case(*row)


async def is_officer(session: AsyncSession, person_id: int) -> bool:
    roles = await session.scalar(
        select(Person.roles).where(Person.id == person_id, Person.state == "active")
    )
    return roles is not None and OFFICER_ROLE in roles.split(";")


async def unit_names(session: AsyncSession, contacts: Sequence[Contact]) -> dict[int, str]:
    ids = {c.unit_id for c in contacts}
    if not ids:
        return {}
    rows = await session.execute(select(Unit.id, Unit.name).where(Unit.id.in_(ids)))
    return {uid: name for uid, name in rows}


class TraceService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: TracingRules,
        clock: Clock,
        tz: ZoneInfo,
        signer: LinkSigner,
        public_url: str,
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self._clock = clock
        self.tz = tz
        self._signer = signer
        self._public_url = public_url.rstrip("/")

    def now(self) -> datetime:
        return utcnow(self._clock)

    def window(self, days: int | None, margin: int | None, until: datetime) -> Window | None:
        days = self.rules.days if days is None else days
        margin = self.rules.margin_minutes if margin is None else margin
        if not 1 <= days <= MAX_DAYS or not 0 <= margin <= MAX_MARGIN:
            return None
        return Window(until - timedelta(days=days), until, timedelta(minutes=margin))

    async def run(
        self,
        person_no: str,
        *,
        actor: str,
        officer_id: int | None = None,
        days: int | None = None,
        margin: int | None = None,
        subtree: bool | None = None,
        until: datetime | None = None,
    ) -> TraceResult | TraceRefused:
        """Trace a person (chat: a health officer; `officer_id` None: the CLI operator)."""
        now = self.now()
        window = self.window(days, margin, until or now)
        if window is None:
            return TraceRefused.BAD_WINDOW
        async with self._sessions.begin() as session:
            if officer_id is not None and not await is_officer(session, officer_id):
                return TraceRefused.NOT_ALLOWED
            case = await find_case(session, person_no)
            if case is None:
                return TraceRefused.UNKNOWN_PERSON
            contacts = await trace(
                session, case.person_id, window, self.rules, now=now, subtree=subtree
            )
            audit.record(session, actor, "trace", case.person_id, f"{len(contacts)} contacts")
            units = await unit_names(session, contacts)
        return TraceResult(
            case,
            window,
            (window.until - window.since).days,
            int(window.margin.total_seconds() // 60),
            contacts,
            units,
        )

    # --- the signed link to the full list ---------------------------------------------------

    def link(self, result: TraceResult, officer_id: int, locale: str) -> str:
        """A URL opening the full list for `rules.link_minutes`; only ids go into it."""
        claims = {
            "p": result.case.person_id,
            "d": result.days,
            "m": result.margin_minutes,
            "u": int(result.window.until.timestamp()),
            "o": officer_id,
            "l": locale,
        }
        token = self._signer.sign(
            LINK_KIND, claims, self.now(), timedelta(minutes=self.rules.link_minutes)
        )
        return f"{self._public_url}/trace?t={token}"

    async def open_link(self, token: str) -> tuple[TraceResult, str] | BadLink | TraceRefused:
        """The full list a link opens, traced again over the same window; every read audited.

        The officer who asked must still be an active health officer.
        """
        try:
            link = self._signer.verify(token, LINK_KIND, self.now())
            claims = link.claims
            person_id, officer_id = int(claims["p"]), int(claims["o"])
            days, margin = int(claims["d"]), int(claims["m"])
            until = datetime.fromtimestamp(int(claims["u"]), UTC)
            locale = str(claims.get("l", "zh_CN"))
        except BadLink as exc:
            return exc
        except (KeyError, TypeError, ValueError):
            return BadLink("malformed")
        window = self.window(days, margin, until)
        if window is None:
            return BadLink("malformed")
        async with self._sessions.begin() as session:
            if not await is_officer(session, officer_id):
                return TraceRefused.NOT_ALLOWED
            person_no = await session.scalar(select(Person.person_no).where(Person.id == person_id))
            case = None if person_no is None else await find_case(session, person_no)
            if case is None:
                return TraceRefused.UNKNOWN_PERSON
            contacts = await trace(session, case.person_id, window, self.rules, now=self.now())
            audit.record(
                session,
                f"person:{officer_id}",
                "trace_read",
                case.person_id,
                f"full list by link, {len(contacts)} contacts",
            )
            units = await unit_names(session, contacts)
        return TraceResult(case, window, days, margin, contacts, units), locale


CSV_COLUMNS = (
    "rank",
    "person_no",
    "name",
    "unit",
    "overlap_minutes",
    "place_code",
    "place_name",
    "visit_from",
    "visit_to",
    "overlap_from",
    "overlap_to",
)


def write_csv(result: TraceResult, out: TextIO, tz: ZoneInfo) -> int:
    """One row per encounter, contacts in rank order; times ISO 8601 in the campus time zone."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    rows = 0
    for rank, contact in enumerate(result.contacts, 1):
        for e in contact.encounters:
            writer.writerow(
                [
                    rank,
                    contact.person_no,
                    _cell(contact.name),
                    _cell(result.units.get(contact.unit_id, "")),
                    contact.overlap_minutes,
                    e.place_code,
                    _cell(e.place_name),
                    e.start.astimezone(tz).isoformat(timespec="minutes"),
                    e.end.astimezone(tz).isoformat(timespec="minutes"),
                    e.overlap_from.astimezone(tz).isoformat(timespec="minutes"),
                    e.overlap_to.astimezone(tz).isoformat(timespec="minutes"),
                ]
            )
            rows += 1
    return rows


def _cell(value: str) -> str:
    # A cell starting with = + - @ would be a formula in a spreadsheet.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
