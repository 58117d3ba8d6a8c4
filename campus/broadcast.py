"""Broadcast: one notice to everyone in a unit (optionally its sub-units and some categories).

Operators broadcast from the CLI; responsible persons by chat, to the units they are
responsible for (unit_responsibles) and those units' sub-units. Each recipient gets one push:
the idempotency key is the broadcast id plus the person, so a retried broadcast adds nothing.

WeChat shows `<a href="…">text</a>` in a text message as a link reading "text": a notice
could dress any address as the school's. Links are therefore written out, text then address,
and any other `<a` is defused, before a notice is queued (`plain_links`).
"""

from __future__ import annotations

import html
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock, utcnow
from bot.i18n import translator
from bot.settings import Settings
from campus import audit
from campus.accounts import Principal
from campus.notifications import Notifications, Push, Schedule
from campus.registry.formats import CATEGORIES
from campus.rules import load_rules
from storage.models import Person, Unit, UnitResponsible, WeChatAccount

KIND = "broadcast"
MAX_TEXT = 500  # characters of the sender's text; the frame adds the unit's name
PAGE = 2000
ACTIVE = "active"


# An anchor tag, as WeChat reads it: any case, attributes with either quotes or none.
_ATTRIBUTE = r"""[^\s=>/]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>"']+))?"""
_ANCHOR = re.compile(rf"<a((?:\s+{_ATTRIBUTE})*)\s*/?>(.*?)</a\s*>", re.IGNORECASE | re.DOTALL)
_ATTRIBUTES = re.compile(
    r"""([^\s=>/]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""", re.DOTALL
)
# What is left of an anchor's start (malformed, or with invisible characters inside): its
# "<" goes full-width.
_OPEN_ANCHOR = re.compile(r"<(?=[\s\u200b-\u200f\u2060\ufeff]*a(?![a-z]))", re.IGNORECASE)


def plain_links(text: str) -> str:
    """`text` with every link written out as "T (X)" (X alone when T is X or empty), and the
    `<` of any other anchor tag made full-width, so that WeChat renders no link of its own.
    Character references are read first (`&lt;a href=…&gt;` is an anchor too)."""

    def written_out(match: re.Match[str]) -> str:
        address = None
        for name, *values in _ATTRIBUTES.findall(match.group(1)):
            if name.lower() == "href":
                address = next((v for v in values if v), "").strip()
                break
        if address is None:
            return match.group(0)  # no address: defused below
        label = re.sub(r"<[^>]*>", "", match.group(2)).strip()
        return address if label in ("", address) else f"{label} ({address})"

    return _OPEN_ANCHOR.sub("\uff1c", _ANCHOR.sub(written_out, html.unescape(text)))


class Refusal(Enum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    UNKNOWN_UNIT = "unknown_unit"
    NOT_RESPONSIBLE = "not_responsible"
    UNKNOWN_CATEGORY = "unknown_category"


class BroadcastRefused(Exception):
    def __init__(self, reason: Refusal, detail: str = "") -> None:
        messages = {
            Refusal.EMPTY: "the notice is empty",
            Refusal.TOO_LONG: f"the notice has {detail} characters; at most {MAX_TEXT}",
            Refusal.UNKNOWN_UNIT: f"unknown unit {detail!r}",
            Refusal.NOT_RESPONSIBLE: f"not responsible for unit {detail!r}",
            Refusal.UNKNOWN_CATEGORY: f"unknown category {detail!r}",
        }
        super().__init__(messages[reason])
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class BroadcastResult:
    broadcast_id: str
    unit_code: str
    unit_name: str
    recipients: int  # persons matched
    queued: int  # pushes added now (fewer when the same broadcast id ran before)
    unbound: int  # recipients without a WeChat account: recorded as failed, not delivered


class BroadcastService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifications: Notifications,
        clock: Clock,
        categories: tuple[str, ...] = (),
    ) -> None:
        self._sessions = sessions
        self._notifications = notifications
        self._clock = clock
        self._categories = categories  # the known ones, for validation (empty: no check)

    async def units_for(self, person_no: str) -> list[tuple[str, str]]:
        """(code, name) of the units a person is directly responsible for."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Unit.code, Unit.name)
                .join(UnitResponsible, UnitResponsible.unit_id == Unit.id)
                .where(UnitResponsible.person_no == person_no)
                .order_by(Unit.code)
            )
            return [(code, name) for code, name in rows]

    async def send(
        self,
        *,
        unit_code: str,
        text: str,
        now: datetime | None = None,
        categories: tuple[str, ...] = (),
        include_subunits: bool = False,
        sender: Principal | None = None,
        broadcast_id: str | None = None,
        urgent: bool = False,
    ) -> BroadcastResult:
        """Queue the notice for everyone active in the unit; `sender` None is the operator.

        Everything is written in one transaction: all recipients are queued, or none.
        """
        text = text.strip()
        if not text:
            raise BroadcastRefused(Refusal.EMPTY)
        if len(text) > MAX_TEXT:
            raise BroadcastRefused(Refusal.TOO_LONG, str(len(text)))
        text = plain_links(text)  # after the check: written out, a link is longer
        for category in categories:
            if self._categories and category not in self._categories:
                raise BroadcastRefused(Refusal.UNKNOWN_CATEGORY, category)
        broadcast_id = broadcast_id or secrets.token_hex(8)
        now = now or utcnow(self._clock)
        async with self._sessions.begin() as session:
            parents: dict[int, int | None] = {
                uid: parent
                for uid, parent in await session.execute(select(Unit.id, Unit.parent_id))
            }
            unit = (
                await session.execute(select(Unit).where(Unit.code == unit_code))
            ).scalar_one_or_none()
            if unit is None:
                raise BroadcastRefused(Refusal.UNKNOWN_UNIT, unit_code)
            if sender is not None and not await self._may_send(session, sender, unit.id, parents):
                raise BroadcastRefused(Refusal.NOT_RESPONSIBLE, unit_code)
            units = _subtree(unit.id, parents) if include_subunits else {unit.id}
            result = await self._queue(
                session, unit, units, categories, text, broadcast_id, urgent, now
            )
            actor = "cli" if sender is None else f"person:{sender.person_id}"
            audit.record(
                session,
                actor,
                "broadcast",
                None,
                f"unit {unit.code}, {result.recipients} recipients, id {broadcast_id}",
            )
        return result

    async def _may_send(
        self, session: AsyncSession, sender: Principal, unit_id: int, parents: dict[int, int | None]
    ) -> bool:
        if not sender.bound or not sender.has_role("responsible"):
            return False
        own = set(
            (
                await session.execute(
                    select(UnitResponsible.unit_id).where(
                        UnitResponsible.person_no == sender.person_no
                    )
                )
            ).scalars()
        )
        # The unit itself or any of its ancestors must be one of the sender's.
        seen: set[int] = set()
        current: int | None = unit_id
        while current is not None and current not in seen:
            if current in own:
                return True
            seen.add(current)
            current = parents.get(current)
        return False

    async def _queue(
        self,
        session: AsyncSession,
        unit: Unit,
        units: set[int],
        categories: tuple[str, ...],
        text: str,
        broadcast_id: str,
        urgent: bool,
        now: datetime,
    ) -> BroadcastResult:
        rendered: dict[str, str] = {}

        def frame(locale: str) -> str:
            if locale not in rendered:
                _ = translator(locale)
                rendered[locale] = _("Notice from {unit}: {text}", unit=unit.name, text=text)
            return rendered[locale]

        recipients = queued = unbound = 0
        last_id = 0
        while True:
            stmt = (
                select(Person.id, Person.locale, WeChatAccount.openid)
                .outerjoin(WeChatAccount, WeChatAccount.person_id == Person.id)
                .where(Person.unit_id.in_(units), Person.state == ACTIVE, Person.id > last_id)
                .order_by(Person.id)
                .limit(PAGE)
            )
            if categories:
                stmt = stmt.where(Person.category.in_(categories))
            page = (await session.execute(stmt)).all()
            if not page:
                break
            last_id = page[-1].id
            recipients += len(page)
            unbound += sum(1 for row in page if row.openid is None)
            queued += await self._notifications.enqueue_many(
                session,
                (
                    Push(
                        person_id=row.id,
                        kind=KIND,
                        text=frame(row.locale),
                        key=f"{KIND}:{broadcast_id}:{row.id}",
                        urgent=urgent,
                        template_data={"unit": unit.name, "content": text},
                    )
                    for row in page
                ),
                now=now,
            )
        return BroadcastResult(broadcast_id, unit.code, unit.name, recipients, queued, unbound)


def _subtree(root: int, parents: dict[int, int | None]) -> set[int]:
    children: dict[int | None, list[int]] = defaultdict(list)
    for unit_id, parent_id in parents.items():
        children[parent_id].append(unit_id)
    found, stack = {root}, [root]
    while stack:
        for child in children[stack.pop()]:
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


async def run_broadcast(settings: Settings, **options: Any) -> BroadcastResult:
    """`healthbot broadcast`: queue a notice in the configured database (options of `send`)."""
    from storage.engine import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        rules = load_rules(settings.rules_file)
        notifications = Notifications(sessions, Schedule(rules.quiet_hours, settings.tz))
        service = BroadcastService(sessions, notifications, SystemClock(), CATEGORIES)
        return await service.send(**options)
    finally:
        await engine.dispose()
