"""Warnings about a person's health: raised once per cause per day, acknowledged, escalated.

A warning goes to the person themselves and to the first rung of their ladder: the
person-level responsible (host, grid leader) and the responsible persons of the nearest unit
that has any (the class counsellor). Unacknowledged, it climbs one rung (the college, then the
university) every `escalate_after` (rules file), up to `max_levels` rungs. Responsible persons
see a masked name, the person number and the reasons; nobody else sees health details.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.i18n import translator
from bot.replies import option
from campus.health import explain
from campus.health.days import campus_day
from campus.health.days import now as clock_now
from campus.health.model import Reason, Standing, Status, reasons_from_text, reasons_to_text, worst
from campus.health.responsibles import Recipient, UnitTree
from campus.health.rules import HealthRules
from campus.health.store import PersonHealth
from campus.identity import mask_name
from campus.notifications import Notifications, Push
from storage.models import HealthWarning, HealthWarningRecipient, Person


@dataclass(frozen=True, slots=True)
class Subject:
    """What a warning needs to know about the person it is about."""

    person_id: int
    person_no: str
    name: str
    locale: str
    unit_id: int
    responsible_id: int | None

    @classmethod
    def of(cls, person: PersonHealth) -> Subject:
        return cls(
            person.person_id,
            person.person_no,
            person.name,
            person.locale,
            person.unit_id,
            person.responsible_id,
        )


@dataclass(frozen=True, slots=True)
class Raise:
    subject: Subject
    causes: tuple[Reason, ...]
    standing: Standing


class WarningService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        rules: HealthRules,
        notifications: Notifications,
        clock: Clock,
        tz: ZoneInfo,
        ack_words: Mapping[str, str],
        set_status_words: Mapping[str, str],
    ) -> None:
        self._sessions = sessions
        self.rules = rules
        self._notifications = notifications
        self._clock = clock
        self._tz = tz
        self._ack_words = ack_words
        self._set_status_words = set_status_words

    # --- raising ------------------------------------------------------------------------

    async def raise_many(
        self,
        session: AsyncSession,
        items: Sequence[Raise],
        *,
        now: datetime,
        tree: UnitTree | None = None,
        notify_subject: bool = True,
    ) -> int:
        """Record and push warnings in the caller's transaction; returns how many were new."""
        items = [i for i in items if i.causes]
        if not items:
            return 0
        day = campus_day(now, self._tz)
        responsible_ids = {i.subject.responsible_id for i in items if i.subject.responsible_id}
        locales = await self._locales(session, responsible_ids)
        if tree is None:
            if len({i.subject.unit_id for i in items}) == 1:
                tree = await UnitTree.for_unit(session, items[0].subject.unit_id)
            else:
                tree = await UnitTree.load(session)
        ladders = {i.subject.person_id: self._ladder(i.subject, tree, locales) for i in items}
        rows = [
            {
                "person_id": i.subject.person_id,
                "day": day,
                "cause": reason.rule,
                "reason": reasons_to_text([reason]),
                "status": i.standing.status.value,
                "level": 0,
                "created_at": now,
                "next_escalation_at": (
                    now + self.rules.escalate_after
                    if self._can_climb(ladders[i.subject.person_id], 0)
                    else None
                ),
            }
            for i in items
            for reason in i.causes
        ]
        created = await _insert_new_warnings(session, rows)
        if not created:
            return 0
        by_subject: dict[int, list[tuple[int, str]]] = defaultdict(list)
        for warning_id, person_id, cause in created:
            by_subject[person_id].append((warning_id, cause))
        recipients: list[dict[str, Any]] = []
        pushes: list[Push] = []
        for item in items:
            new = sorted(by_subject.get(item.subject.person_id, []))
            if not new:
                continue
            new_causes = {cause for _, cause in new}
            reasons = tuple(r for r in item.causes if r.rule in new_causes)
            ids = [warning_id for warning_id, _ in new]
            if notify_subject:
                pushes.append(self._notice(item.subject, item.standing, reasons, ids[0]))
            ladder = ladders[item.subject.person_id]
            for recipient in ladder[0] if ladder else []:
                recipients += [
                    {
                        "warning_id": w,
                        "person_id": recipient.person_id,
                        "level": 0,
                        "notified_at": now,
                    }
                    for w in ids
                ]
                pushes.append(
                    self._warning_push(
                        item.subject, item.standing.status, reasons, ids, recipient, tree, 0
                    )
                )
        if recipients:
            await session.execute(insert(HealthWarningRecipient), recipients)
        await self._notifications.enqueue_many(session, pushes, now=now)
        return len(created)

    def _ladder(
        self, subject: Subject, tree: UnitTree, locales: Mapping[int, str]
    ) -> list[list[Recipient]]:
        levels = tree.levels(subject.unit_id, exclude=[subject.person_id])
        first: list[Recipient] = []
        if subject.responsible_id and subject.responsible_id != subject.person_id:
            locale = locales.get(subject.responsible_id)
            if locale is not None:
                first.append(Recipient(subject.responsible_id, locale))
        rungs = [first + (levels[0] if levels else []), *levels[1:]]
        ladder: list[list[Recipient]] = []
        seen: set[int] = set()
        for rung in rungs:  # nobody twice: a host may also head their unit, or one further up
            fresh = []
            for recipient in rung:
                if recipient.person_id not in seen:
                    seen.add(recipient.person_id)
                    fresh.append(recipient)
            if fresh:
                ladder.append(fresh)
        return ladder

    def _can_climb(self, ladder: list[list[Recipient]], level: int) -> bool:
        return level + 1 < len(ladder) and level < self.rules.max_levels

    async def _locales(self, session: AsyncSession, person_ids: set[int]) -> dict[int, str]:
        if not person_ids:
            return {}
        stmt = select(Person.id, Person.locale).where(
            Person.id.in_(person_ids), Person.state == "active"
        )
        return {pid: locale for pid, locale in await session.execute(stmt)}

    # --- texts --------------------------------------------------------------------------

    def _notice(
        self, subject: Subject, standing: Standing, reasons: tuple[Reason, ...], first_id: int
    ) -> Push:
        _ = translator(subject.locale)
        lines = explain.reason_lines(reasons, self.rules, _, subject.locale)
        if standing.status is Status.GREEN:
            text = _("Health notice: we noted\n{reasons}", reasons=lines)
        else:
            text = _(
                "Health notice: your status is {colour}.\n{reasons}\n"
                "Please stay where you are and follow your counsellor's instructions. "
                "Send status for details.",
                colour=explain.colour(standing.status, _),
                reasons=lines,
            )
        return Push(
            person_id=subject.person_id,
            kind="health_notice",
            text=text,
            key=f"health:notice:{subject.person_id}:{first_id}",
            urgent=standing.status is Status.RED,
        )

    def _warning_push(
        self,
        subject: Subject,
        status: Status,
        reasons: tuple[Reason, ...],
        ids: list[int],
        recipient: Recipient,
        tree: UnitTree,
        level: int,
    ) -> Push:
        _ = translator(recipient.locale)
        params = {
            "name": mask_name(subject.name),
            "person_no": subject.person_no,
            "unit": tree.names.get(subject.unit_id, ""),
            "colour": explain.colour(status, _),
            "reasons": explain.reason_lines(reasons, self.rules, _, recipient.locale),
        }
        if level == 0:
            text = _(
                "⚠️ Health warning: {name} ({person_no}, {unit}) is {colour}.\n{reasons}", **params
            )
        else:
            minutes = int(self.rules.escalate_after.total_seconds() // 60) * level
            text = _(
                "⚠️ Escalated health warning, not acknowledged for {minutes} minutes: "
                "{name} ({person_no}, {unit}) is {colour}.\n{reasons}",
                minutes=minutes,
                **params,
            )
        word = self._ack_words.get(recipient.locale, "ack")
        ack = option(_("Acknowledge"), f"{word} {','.join(map(str, ids))}", 1)
        text += "\n" + _("Tap to acknowledge, or reply {word}:", word=word) + "\n" + ack
        return Push(
            person_id=recipient.person_id,
            kind="health_warning",
            text=text,
            key=f"health:warn:{ids[0]}:{recipient.person_id}:{level}",
            urgent=status is Status.RED,
        )

    async def ask_for_clearance(
        self, session: AsyncSession, subject: Subject, standing: Standing, *, now: datetime
    ) -> int:
        """Tell the health officers that a red person has had the normal days red asks for."""
        stmt = select(Person.id, Person.locale).where(
            Person.roles.contains("health_officer"), Person.state == "active"
        )
        officers = (await session.execute(stmt)).all()
        since = int(standing.since.timestamp()) if standing.since else 0
        pushes = []
        for officer_id, locale in officers:
            _ = translator(locale)
            text = _(
                "{name} ({person_no}) has had {days} normal days while {colour} and waits for "
                "your clearance. Send: {command}",
                name=mask_name(subject.name),
                person_no=subject.person_no,
                days=self.rules.recovery[Status.RED].normal_days,
                colour=explain.colour(Status.RED, _),
                command=self._clear_command(locale, subject.person_no),
            )
            pushes.append(
                Push(
                    person_id=officer_id,
                    kind="health_clearance",
                    text=text,
                    key=f"health:clearance:{subject.person_id}:{since}:{officer_id}",
                )
            )
        return await self._notifications.enqueue_many(session, pushes, now=now)

    def _clear_command(self, locale: str, person_no: str) -> str:
        word = self._set_status_words.get(locale, "setstatus")
        green = "green"
        return f"{word} {person_no} {green} …"

    # --- acknowledging and escalating ---------------------------------------------------

    async def acknowledge(self, person_id: int, ids: Sequence[int] | None = None) -> int:
        """Acknowledge the open warnings sent to this person (all, or those in `ids`)."""
        now = clock_now(self._clock)
        mine = select(HealthWarningRecipient.warning_id).where(
            HealthWarningRecipient.person_id == person_id
        )
        stmt = (
            update(HealthWarning)
            .where(HealthWarning.id.in_(mine), HealthWarning.acked_at.is_(None))
            .values(acked_at=now, acked_by_id=person_id, next_escalation_at=None)
        )
        if ids is not None:
            stmt = stmt.where(HealthWarning.id.in_(list(ids)))
        async with self._sessions.begin() as session:
            result = await session.execute(stmt)
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def open_for(self, person_id: int) -> int:
        """How many warnings sent to this person wait for an acknowledgement."""
        stmt = (
            select(HealthWarning.id)
            .join(HealthWarningRecipient, HealthWarningRecipient.warning_id == HealthWarning.id)
            .where(HealthWarningRecipient.person_id == person_id, HealthWarning.acked_at.is_(None))
        )
        async with self._sessions() as session:
            return len((await session.execute(stmt)).all())

    async def escalate_due(self, now: datetime | None = None) -> int:
        """Pass every warning unacknowledged past its time one rung up; returns how many."""
        now = now or clock_now(self._clock)
        async with self._sessions.begin() as session:
            stmt = (
                select(HealthWarning, Person)
                .join(Person, Person.id == HealthWarning.person_id)
                .where(
                    HealthWarning.acked_at.is_(None),
                    HealthWarning.next_escalation_at.is_not(None),
                    HealthWarning.next_escalation_at <= now,
                )
                .order_by(HealthWarning.id)
                .limit(5000)
            )
            due = (await session.execute(stmt)).all()
            if not due:
                return 0
            tree = await UnitTree.load(session)
            responsible_ids = {p.responsible_id for _, p in due if p.responsible_id}
            locales = await self._locales(session, responsible_ids)
            groups: dict[tuple[int, int], list[HealthWarning]] = defaultdict(list)
            subjects: dict[int, Subject] = {}
            for warning, person in due:
                subjects[person.id] = Subject(
                    person.id,
                    person.person_no,
                    person.name,
                    person.locale,
                    person.unit_id,
                    person.responsible_id,
                )
                groups[(person.id, warning.level)].append(warning)
            pushes: list[Push] = []
            recipients: list[dict[str, Any]] = []
            for (person_id, level), warnings in groups.items():
                subject = subjects[person_id]
                ladder = self._ladder(subject, tree, locales)
                rung = level + 1
                climb = self._can_climb(ladder, level)
                for w in warnings:
                    w.level = rung if climb else level
                    w.next_escalation_at = (
                        now + self.rules.escalate_after
                        if climb and self._can_climb(ladder, rung)
                        else None
                    )
                if not climb:
                    continue
                ids = [w.id for w in warnings]
                status = worst([Status(w.status) for w in warnings])
                reasons = _reasons_of(warnings)
                for recipient in ladder[rung]:
                    recipients += [
                        {
                            "warning_id": i,
                            "person_id": recipient.person_id,
                            "level": rung,
                            "notified_at": now,
                        }
                        for i in ids
                    ]
                    pushes.append(
                        self._warning_push(subject, status, reasons, ids, recipient, tree, rung)
                    )
            if recipients:
                stmt_ins = _insert_ignore(
                    session, HealthWarningRecipient, ["warning_id", "person_id"]
                )
                await session.execute(stmt_ins, recipients)
            await self._notifications.enqueue_many(session, pushes, now=now)
            return len(due)


def _reasons_of(warnings: list[HealthWarning]) -> tuple[Reason, ...]:
    return tuple(r for w in warnings for r in reasons_from_text(w.reason))


def _insert_ignore(session: AsyncSession, model: Any, keys: list[str]) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=keys)
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing(index_elements=keys)
    raise NotImplementedError(f"warnings support sqlite and postgresql, not {dialect!r}")


async def _insert_new_warnings(
    session: AsyncSession, rows: list[dict[str, Any]]
) -> list[tuple[int, int, str]]:
    """Insert the warnings not raised before (same person, day, cause); their ids back."""
    stmt = _insert_ignore(session, HealthWarning, ["person_id", "day", "cause"]).returning(
        HealthWarning.id, HealthWarning.person_id, HealthWarning.cause
    )
    created: list[tuple[int, int, str]] = []
    for start in range(0, len(rows), 500):
        result = await session.execute(stmt, rows[start : start + 500])
        created += [(r[0], r[1], r[2]) for r in result.all()]
    return created
