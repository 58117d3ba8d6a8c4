"""Notifications: the one way any feature pushes a message to a person (the outbox).

A push is an outbox row added to the caller's own transaction, so it commits or rolls back
with its cause, and its idempotency key makes the same cause twice one push:

    async with sessions.begin() as session:
        ...  # the change that causes the push
        await notifications.enqueue(
            session,
            person_id=person.id,
            kind="status_red",
            text=lambda _: _("Your health status is now {colour}.", colour=_("Red")),
            key=f"status:{person.id}:{change.id}",
            urgent=True,
            now=now,
        )

`text` is a string already in the recipient's language, or a function of a translator that
is called with the recipient's (Person.locale). Non-urgent pushes that fall due in quiet hours
(rules file `quiet_hours`, default 22:30–07:00 campus time) wait until they end. The dispatcher
(scheduler/dispatcher.py) resolves the WeChat account when it sends; a person without one is
recorded as failed (`unbound`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Translate, translator
from bot.metrics import OUTBOX_DEPTH, OUTBOX_FAILED
from campus.quiet_hours import QuietHours
from storage import outbox
from storage.models import Person

log = logging.getLogger(__name__)

PushText = str | Callable[[Translate], str]

KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MAX_KEY = 200
# WeChat refuses customer-service text over 2,048 bytes (45002).
MAX_TEXT_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Push:
    """One push for `enqueue_many`; `text` is already in the recipient's language."""

    person_id: int
    kind: str
    text: str
    key: str
    urgent: bool = False
    template_data: Mapping[str, str] | None = None
    url: str | None = None
    not_before: datetime | None = None


@dataclass(frozen=True, slots=True)
class Schedule:
    """When pushes may go: quiet hours in the campus time zone."""

    quiet: QuietHours = field(default_factory=QuietHours)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def release(self, due: datetime, *, urgent: bool) -> datetime:
        return self.quiet.release(due, self.tz, urgent=urgent)


class Notifications:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], schedule: Schedule | None = None
    ) -> None:
        self._sessions = sessions
        self.schedule = schedule or Schedule()

    async def enqueue(
        self,
        session: AsyncSession,
        *,
        person_id: int,
        kind: str,
        text: PushText,
        key: str,
        now: datetime,
        urgent: bool = False,
        template_data: Mapping[str, str] | None = None,
        url: str | None = None,
        not_before: datetime | None = None,
        locale: str | None = None,
    ) -> bool:
        """Add a push to the caller's transaction. False when `key` was pushed before.

        `not_before` delays it (a reminder for 08:00); quiet hours apply on top unless
        `urgent`. `locale` spares a lookup when the caller knows the recipient's language.
        """
        if not isinstance(text, str):
            if locale is None:
                locale = await session.scalar(select(Person.locale).where(Person.id == person_id))
                if locale is None:
                    raise LookupError(f"no person with id {person_id}")
            text = text(translator(locale))
        push = Push(person_id, kind, text, key, urgent, template_data, url, not_before)
        return await self.enqueue_many(session, [push], now=now) == 1

    async def enqueue_many(
        self, session: AsyncSession, pushes: Iterable[Push], *, now: datetime
    ) -> int:
        """Add many pushes to the caller's transaction; returns how many were new."""
        if now.tzinfo is None:
            raise ValueError("naive datetime given as now")
        now = now.astimezone(UTC)
        rows = [self._row(p, now) for p in pushes]
        return await outbox.insert_ignoring_duplicates(session, rows)

    def _row(self, push: Push, now: datetime) -> dict[str, Any]:
        if not KIND.match(push.kind):
            raise ValueError(f"push kind {push.kind!r} is not lower_snake_case of 1–40 characters")
        if not 0 < len(push.key) <= MAX_KEY:
            raise ValueError(f"idempotency key of {len(push.key)} characters; allowed 1–{MAX_KEY}")
        size = len(push.text.encode())
        if not push.text.strip() or size > MAX_TEXT_BYTES:
            raise ValueError(f"push text of {size} bytes; allowed 1–{MAX_TEXT_BYTES}")
        due = now
        if push.not_before is not None:
            if push.not_before.tzinfo is None:
                raise ValueError("naive datetime given as not_before")
            due = max(now, push.not_before)
        payload: dict[str, Any] = {"text": push.text}
        if push.template_data:
            payload["template_data"] = dict(push.template_data)
        if push.url:
            payload["url"] = push.url
        return {
            "person_id": push.person_id,
            "kind": push.kind,
            "payload": payload,
            "idempotency_key": push.key,
            "urgent": push.urgent,
            "not_before": self.schedule.release(due, urgent=push.urgent),
            "attempts": 0,
            "state": outbox.PENDING,
            "created_at": now,
        }

    async def cancel(self, session: AsyncSession, key: str) -> bool:
        """Withdraw a push that has not gone yet (a reminder no longer needed)."""
        return await outbox.cancel(session, key)

    async def template_finished(self, msgid: int, status: str) -> bool:
        """Record WeChat's TEMPLATESENDJOBFINISH report for the push sent as `msgid`."""
        if not msgid:
            return False
        async with self._sessions.begin() as session:
            kind = await outbox.record_receipt(session, msgid, status or "unknown")
        if kind is None:
            # Unknown msgid: sent before the outbox existed, or the report outran our commit.
            log.info("template report for an unknown msgid (%s)", status)
            return False
        if status != "success":
            reason = status.split(":", 1)[-1].strip().replace(" ", "_") or "unknown"
            OUTBOX_FAILED.labels(kind=kind, code=reason).inc()
        return True

    async def depth(self, *, backlog_only: bool = False) -> dict[str, int]:
        """Rows by state (or only pending and sending); also sets the outbox depth gauge."""
        states = (outbox.PENDING, outbox.SENDING) if backlog_only else outbox.STATES
        async with self._sessions() as session:
            counts = await outbox.depth(session, states)
        for state, n in counts.items():
            OUTBOX_DEPTH.labels(state=state).set(n)
        return counts
