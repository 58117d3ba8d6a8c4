"""Incidents: a health officer opens one for a case, marks its contacts, closes it.

Opening sets the case red through the health override (the status change is stored with its
reason and rule version, the person's responsible persons get the usual red warning), runs
the trace and keeps its contacts. Marking sets chosen contacts yellow the same way (a red
contact stays red). Every affected person and their responsible persons are told through the
outbox, urgent (quiet hours do not hold these back), in the same transaction as the change.
Every action is written to the incident's log; nothing is ever deleted from it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import translator
from campus import audit
from campus.health import explain, store
from campus.health.days import campus_day
from campus.health.model import Standing, Status
from campus.health.responsibles import Recipient, UnitTree
from campus.health.rules import HealthRules
from campus.health.status import record_override
from campus.health.warnings import Raise, Subject, WarningService
from campus.identity import mask_name
from campus.notifications import MAX_TEXT_BYTES, Notifications, Push
from campus.tracing.query import trace
from campus.tracing.service import Case, TraceResult, TraceService, is_officer, unit_names
from storage.models import Person, Place
from storage.models_tracing import Incident, IncidentContact, IncidentLog

OPEN, CLOSED = "open", "closed"


class Refused(Enum):
    NOT_ALLOWED = "not_allowed"
    UNKNOWN_PERSON = "unknown_person"
    UNKNOWN_INCIDENT = "unknown_incident"
    ALREADY_OPEN = "already_open"
    CLOSED = "closed"
    NO_NOTE = "no_note"
    BAD_WINDOW = "bad_window"


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: Refused
    incident_id: int | None = None  # ALREADY_OPEN: the open one


@dataclass(frozen=True, slots=True)
class Opened:
    incident_id: int
    before: Status
    after: Status
    trace: TraceResult


@dataclass(frozen=True, slots=True)
class Marked:
    incident_id: int
    marked: list[str]  # person numbers marked now
    already: list[str]  # marked before
    not_contacts: list[str]  # named, but not among the incident's contacts


@dataclass(frozen=True, slots=True)
class LogLine:
    at: datetime
    actor: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class ContactLine:
    rank: int
    person_no: str
    name: str
    overlap_minutes: int
    first_at: datetime
    place_name: str
    marked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IncidentView:
    incident_id: int
    state: str
    person_no: str
    name: str
    note: str
    opened_at: datetime
    closed_at: datetime | None
    contacts: list[ContactLine]
    log: list[LogLine]


def _log(
    session: AsyncSession, incident_id: int, at: datetime, actor: str, action: str, detail: str
) -> None:
    session.add(
        IncidentLog(incident_id=incident_id, at=at, actor=actor, action=action, detail=detail)
    )


class IncidentService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        tracing: TraceService,
        health_rules: HealthRules,
        warnings: WarningService,
        notifications: Notifications,
        tz: ZoneInfo,
    ) -> None:
        self._sessions = sessions
        self._tracing = tracing
        self._rules = health_rules
        self._warnings = warnings
        self._notifications = notifications
        self._tz = tz

    # --- open -------------------------------------------------------------------------------

    async def open(
        self,
        person_no: str,
        note: str,
        *,
        actor: str,
        officer_id: int | None = None,
        days: int | None = None,
        margin: int | None = None,
    ) -> Opened | Refusal:
        """Open an incident for a case: red, traced, contacts kept, everyone told."""
        note = " ".join(note.split())[:200]
        if not note:
            return Refusal(Refused.NO_NOTE)
        now = self._tracing.now()
        window = self._tracing.window(days, margin, now)
        if window is None:
            return Refusal(Refused.BAD_WINDOW)
        day = campus_day(now, self._tz)
        async with store.write_lock(self._sessions), self._sessions.begin() as session:
            if officer_id is not None and not await is_officer(session, officer_id):
                return Refusal(Refused.NOT_ALLOWED)
            person = await store.find_person(session, person_no[:64])
            if person is None:
                return Refusal(Refused.UNKNOWN_PERSON)
            existing = await session.scalar(
                select(Incident.id).where(
                    Incident.person_id == person.person_id, Incident.state == OPEN
                )
            )
            if existing is not None:
                return Refusal(Refused.ALREADY_OPEN, existing)
            incident = Incident(
                person_id=person.person_id,
                state=OPEN,
                note=note,
                since=window.since,
                until=window.until,
                margin_minutes=int(window.margin.total_seconds() // 60),
                opened_at=now,
                opened_by=actor,
            )
            session.add(incident)
            await session.flush()
            iid = incident.id
            _log(session, iid, now, actor, "opened", note)
            audit.record(session, actor, "incident_open", person.person_id, f"incident {iid}")
            reason = f"#{iid} {note}"
            if person.status is not Status.RED:
                after = await self._override(session, person, Status.RED, reason, actor, now, day)
                await self._warnings.raise_many(
                    session,
                    [Raise(Subject.of(person), after.reasons, after)],
                    now=now,
                    notify_subject=False,
                )
                _log(session, iid, now, actor, "status", f"{person.status.value} -> red")
            else:
                # No status change, so no red warning: tell the responsible persons here.
                _log(session, iid, now, actor, "status", "already red")
                tree = await UnitTree.for_unit(session, person.unit_id)
                who = f"{mask_name(person.name)} ({person.person_no})"
                await self._notifications.enqueue_many(
                    session,
                    [
                        self._case_push(iid, r.person_id, r.locale, who)
                        for r in await self._first_rung(session, person, tree)
                    ],
                    now=now,
                )
            _ = translator(person.locale)
            await self._notifications.enqueue(
                session,
                person_id=person.person_id,
                kind="incident_case",
                text=_(
                    "A health officer set your health status to {colour}: {note}",
                    colour=explain.colour(Status.RED, _),
                    note=reason,
                ),
                key=f"incident:{iid}:case",
                urgent=True,
                now=now,
                locale=person.locale,
            )
            contacts = await trace(session, person.person_id, window, self._tracing.rules, now=now)
            if contacts:
                await session.execute(
                    insert(IncidentContact),
                    [
                        {
                            "incident_id": iid,
                            "person_id": c.person_id,
                            "rank": rank,
                            "overlap_minutes": c.overlap_minutes,
                            "first_at": c.first,
                            "place_id": c.main.place_id,
                        }
                        for rank, c in enumerate(contacts, 1)
                    ],
                )
            days_n = (window.until - window.since).days
            margin_n = int(window.margin.total_seconds() // 60)
            _log(
                session,
                iid,
                now,
                actor,
                "traced",
                f"{len(contacts)} contacts, {days_n} days, margin {margin_n} min",
            )
            audit.record(session, actor, "trace", person.person_id, f"{len(contacts)} contacts")
            units = await unit_names(session, contacts)
        case = Case(
            person.person_id,
            person.person_no,
            person.name,
            person.unit_id,
            person.locale,
            person.responsible_id,
            Status.RED.value,
        )
        result = TraceResult(case, window, days_n, margin_n, contacts, units)
        return Opened(iid, person.status, Status.RED, result)

    async def _override(
        self,
        session: AsyncSession,
        person: store.PersonHealth,
        status: Status,
        note: str,
        actor: str,
        now: datetime,
        day: date,
    ) -> Standing:
        """The health officer's override (campus.health.status), in this transaction."""
        return await record_override(
            session, person, status, note, actor=actor, now=now, day=day, rules=self._rules
        )

    # --- mark -------------------------------------------------------------------------------

    async def mark(
        self,
        incident_id: int,
        person_nos: Sequence[str] | None,
        *,
        actor: str,
        officer_id: int | None = None,
    ) -> Marked | Refusal:
        """Mark contacts close contacts (`person_nos` None: every contact not marked yet)."""
        now = self._tracing.now()
        day = campus_day(now, self._tz)
        async with store.write_lock(self._sessions), self._sessions.begin() as session:
            if officer_id is not None and not await is_officer(session, officer_id):
                return Refusal(Refused.NOT_ALLOWED)
            incident = await session.get(Incident, incident_id)
            if incident is None:
                return Refusal(Refused.UNKNOWN_INCIDENT)
            if incident.state != OPEN:
                return Refusal(Refused.CLOSED, incident_id)
            stmt = (
                select(
                    IncidentContact.person_id,
                    Person.person_no,
                    IncidentContact.marked_at,
                    IncidentContact.first_at,
                    Place.name,
                )
                .join(Person, Person.id == IncidentContact.person_id)
                .join(Place, Place.id == IncidentContact.place_id)
                .where(IncidentContact.incident_id == incident_id)
                .order_by(IncidentContact.rank)
            )
            rows = (await session.execute(stmt)).all()
            by_no = {r.person_no: r for r in rows}
            if person_nos is None:
                wanted = [r for r in rows if r.marked_at is None]
                not_contacts = []
            else:
                names = list(dict.fromkeys(n.strip().upper()[:64] for n in person_nos if n.strip()))
                wanted = [by_no[n] for n in names if n in by_no]
                not_contacts = [n for n in names if n not in by_no]
            already = [r.person_no for r in wanted if r.marked_at is not None]
            fresh = [r for r in wanted if r.marked_at is None]
            if fresh:
                await self._mark(session, incident_id, fresh, actor, now, day)
                _log(
                    session,
                    incident_id,
                    now,
                    actor,
                    "marked",
                    ", ".join(r.person_no for r in fresh),
                )
        return Marked(incident_id, [r.person_no for r in fresh], already, not_contacts)

    async def _mark(
        self,
        session: AsyncSession,
        incident_id: int,
        rows: Sequence[Any],
        actor: str,
        now: datetime,
        day: date,
    ) -> None:
        tree = await UnitTree.load(session)
        note = f"#{incident_id} close contact"
        pushes: list[Push] = []
        subjects: dict[int, list[str]] = defaultdict(list)
        locales: dict[int, str] = {}
        for row in rows:
            person_id, first_at, place_name = row.person_id, row.first_at, row.name
            person = await store.load_person(session, person_id)
            if person is None:
                continue
            colour = person.status
            if person.status.severity < Status.YELLOW.severity:
                await self._override(session, person, Status.YELLOW, note, actor, now, day)
                colour = Status.YELLOW
            await session.execute(
                update(IncidentContact)
                .where(
                    IncidentContact.incident_id == incident_id,
                    IncidentContact.person_id == person_id,
                )
                .values(marked_at=now, marked_by=actor)
            )
            audit.record(session, actor, "close_contact", person_id, f"incident {incident_id}")
            _ = translator(person.locale)
            pushes.append(
                Push(
                    person_id=person_id,
                    kind="close_contact",
                    text=_(
                        "Health notice: you were at {place} around {time} at the same time as "
                        "a confirmed case. You are a close contact; your health status is "
                        "{colour}. Please stay where you are, avoid contact with others and "
                        "follow your counsellor's instructions.",
                        place=place_name,
                        time=explain.short_time(first_at, self._tz, person.locale),
                        colour=explain.colour(colour, _),
                    ),
                    key=f"incident:{incident_id}:contact:{person_id}",
                    urgent=True,
                )
            )
            for recipient in await self._first_rung(session, person, tree):
                subjects[recipient.person_id].append(
                    f"{mask_name(person.name)} ({person.person_no})"
                )
                locales[recipient.person_id] = recipient.locale
        for recipient_id, names in subjects.items():
            pushes.append(
                self._responsible_push(incident_id, recipient_id, locales[recipient_id], names, now)
            )
        await self._notifications.enqueue_many(session, pushes, now=now)

    async def _first_rung(
        self, session: AsyncSession, person: store.PersonHealth, tree: UnitTree
    ) -> list[Recipient]:
        """Who answers for the person first: their own responsible, their unit's nearest."""
        first: list[Recipient] = []
        if person.responsible_id and person.responsible_id != person.person_id:
            locale = await session.scalar(
                select(Person.locale).where(
                    Person.id == person.responsible_id, Person.state == "active"
                )
            )
            if locale is not None:
                first.append(Recipient(person.responsible_id, locale))
        levels = tree.levels(person.unit_id, exclude=[person.person_id])
        seen = {r.person_id for r in first}
        return first + [r for r in (levels[0] if levels else []) if r.person_id not in seen]

    def _case_push(self, incident_id: int, recipient_id: int, locale: str, who: str) -> Push:
        _ = translator(locale)
        return Push(
            person_id=recipient_id,
            kind="incident_case",
            text=_(
                "⚠️ {who} is a confirmed case (incident #{incident}) and stays {colour}; please "
                "make sure they stay where they are.",
                who=who,
                incident=incident_id,
                colour=explain.colour(Status.RED, _),
            ),
            key=f"incident:{incident_id}:case:{recipient_id}",
            urgent=True,
        )

    def _responsible_push(
        self,
        incident_id: int,
        recipient_id: int,
        locale: str,
        names: list[str],
        now: datetime,
    ) -> Push:
        _ = translator(locale)
        head = _(
            "⚠️ Close contacts of a confirmed case (incident #{incident}), now at least {colour}; "
            "please make sure they stay where they are:",
            incident=incident_id,
            colour=explain.colour(Status.YELLOW, _),
        )
        lines = [head]
        for i, who in enumerate(names):
            more = _("… and {count} more", count=len(names) - i)
            if len("\n".join([*lines, who, more]).encode()) > MAX_TEXT_BYTES - 8:
                lines.append(more)
                break
            lines.append(who)
        return Push(
            person_id=recipient_id,
            kind="close_contacts",
            text="\n".join(lines),
            key=f"incident:{incident_id}:resp:{recipient_id}:{int(now.timestamp() * 1000)}",
            urgent=True,
        )

    # --- close and show ---------------------------------------------------------------------

    async def close(
        self, incident_id: int, note: str, *, actor: str, officer_id: int | None = None
    ) -> IncidentView | Refusal:
        note = " ".join(note.split())[:200]
        now = self._tracing.now()
        async with store.write_lock(self._sessions), self._sessions.begin() as session:
            if officer_id is not None and not await is_officer(session, officer_id):
                return Refusal(Refused.NOT_ALLOWED)
            incident = await session.get(Incident, incident_id)
            if incident is None:
                return Refusal(Refused.UNKNOWN_INCIDENT)
            if incident.state != OPEN:
                return Refusal(Refused.CLOSED, incident_id)
            incident.state = CLOSED
            incident.closed_at = now
            incident.closed_by = actor
            _log(session, incident_id, now, actor, "closed", note)
            audit.record(
                session, actor, "incident_close", incident.person_id, f"incident {incident_id}"
            )
        view = await self.show(incident_id, actor=actor, audited=False)
        assert not isinstance(view, Refusal)
        return view

    async def show(
        self,
        incident_id: int,
        *,
        actor: str,
        officer_id: int | None = None,
        audited: bool = True,
    ) -> IncidentView | Refusal:
        """The incident, its contacts and its log; the read is audited."""
        async with self._sessions.begin() as session:
            if officer_id is not None and not await is_officer(session, officer_id):
                return Refusal(Refused.NOT_ALLOWED)
            incident = await session.get(Incident, incident_id)
            if incident is None:
                return Refusal(Refused.UNKNOWN_INCIDENT)
            case = (
                await session.execute(
                    select(Person.person_no, Person.name).where(Person.id == incident.person_id)
                )
            ).one()
            contacts = [
                ContactLine(*row)
                for row in await session.execute(
                    select(
                        IncidentContact.rank,
                        Person.person_no,
                        Person.name,
                        IncidentContact.overlap_minutes,
                        IncidentContact.first_at,
                        Place.name,
                        IncidentContact.marked_at,
                    )
                    .join(Person, Person.id == IncidentContact.person_id)
                    .join(Place, Place.id == IncidentContact.place_id)
                    .where(IncidentContact.incident_id == incident_id)
                    .order_by(IncidentContact.rank)
                )
            ]
            log = [
                LogLine(*row)
                for row in await session.execute(
                    select(
                        IncidentLog.at, IncidentLog.actor, IncidentLog.action, IncidentLog.detail
                    )
                    .where(IncidentLog.incident_id == incident_id)
                    .order_by(IncidentLog.id)
                )
            ]
            if audited:
                audit.record(
                    session, actor, "incident_read", incident.person_id, f"incident {incident_id}"
                )
                _log(session, incident_id, self._tracing.now(), actor, "read", "")
        return IncidentView(
            incident_id,
            incident.state,
            case.person_no,
            case.name,
            incident.note,
            incident.opened_at,
            incident.closed_at,
            contacts,
            log,
        )
