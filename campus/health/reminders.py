"""Reminders to those who have not reported, and the afternoon summary to responsible persons."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Exists, exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.i18n import translator
from bot.replies import option
from campus.health import explain
from campus.health.days import campus_day
from campus.health.days import now as clock_now
from campus.health.responsibles import UnitTree
from campus.identity import mask_name
from campus.notifications import Notifications, Push
from storage.models import HealthReport, Person, WeChatAccount

CHUNK = 5000  # pushes per transaction
LISTED = 30  # masked names listed in a summary; the rest are counted
MAX_BYTES = 2000  # WeChat's customer-service text limit is 2,048 bytes


@dataclass(frozen=True, slots=True)
class _Member:
    reported: bool
    masked: str
    person_no: str


class ReminderService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifications: Notifications,
        clock: Clock,
        tz: ZoneInfo,
        checkin_words: Mapping[str, str],
    ) -> None:
        self._sessions = sessions
        self._notifications = notifications
        self._clock = clock
        self._tz = tz
        self._checkin_words = checkin_words

    async def remind(self, slot: str, now: datetime | None = None) -> int:
        """Push a reminder to every bound person without a report today (once per slot a day)."""
        now = now or clock_now(self._clock)
        day = campus_day(now, self._tz)
        stmt = (
            select(Person.id, Person.locale)
            .join(WeChatAccount, WeChatAccount.person_id == Person.id)
            .where(
                Person.state == "active",
                WeChatAccount.subscribed.is_(True),
                ~_reported(day),
            )
            .order_by(Person.id)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        pushes = [self._reminder(pid, locale, day, slot) for pid, locale in rows]
        queued = 0
        for start in range(0, len(pushes), CHUNK):
            async with self._sessions.begin() as session:
                queued += await self._notifications.enqueue_many(
                    session, pushes[start : start + CHUNK], now=now
                )
        return queued

    def _reminder(self, person_id: int, locale: str, day: date, slot: str) -> Push:
        _ = translator(locale)
        word = self._checkin_words.get(locale, "checkin")
        text = (
            _(
                "Reminder: you have not sent today's health report yet. Send {example}, or tap:",
                example=f"{word} 36.5",
            )
            + "\n"
            + option(_("Check in now"), word, 1)
        )
        return Push(person_id, "health_reminder", text, f"health:remind:{day}:{slot}:{person_id}")

    async def summarize(self, now: datetime | None = None) -> int:
        """Each responsible person: how many of their people reported today, who has not."""
        now = now or clock_now(self._clock)
        day = campus_day(now, self._tz)
        async with self._sessions() as session:
            tree = await UnitTree.load(session)
            persons = (
                await session.execute(
                    select(
                        Person.id,
                        Person.name,
                        Person.person_no,
                        Person.locale,
                        Person.unit_id,
                        Person.responsible_id,
                        _reported(day).label("reported"),
                    ).where(Person.state == "active")
                )
            ).all()
        by_unit: dict[int, dict[int, _Member]] = defaultdict(dict)
        by_responsible: dict[int, dict[int, _Member]] = defaultdict(dict)
        locales: dict[int, str] = {}
        for pid, name, person_no, locale, unit_id, responsible_id, reported in persons:
            locales[pid] = locale
            member = _Member(bool(reported), mask_name(name), person_no)
            by_unit[unit_id][pid] = member
            if responsible_id is not None and responsible_id != pid:
                by_responsible[responsible_id][pid] = member
        below = tree.subtree_units()
        for unit_id, people in tree.responsibles.items():
            for recipient in people:
                for unit in below.get(unit_id, [unit_id]):
                    by_responsible[recipient.person_id].update(by_unit.get(unit, {}))
        pushes = []
        for person_id, members in by_responsible.items():
            members.pop(person_id, None)  # nobody is in their own summary
            if members and person_id in locales:
                pushes.append(self._summary(person_id, locales[person_id], day, members))
        queued = 0
        for start in range(0, len(pushes), CHUNK):
            async with self._sessions.begin() as session:
                queued += await self._notifications.enqueue_many(
                    session, pushes[start : start + CHUNK], now=now
                )
        return queued

    def _summary(self, person_id: int, locale: str, day: date, members: dict[int, _Member]) -> Push:
        _ = translator(locale)
        reported = sum(1 for m in members.values() if m.reported)
        lines = [
            _(
                "Health report summary for {date}: {reported} of {total} reported.",
                date=explain.short_date(day, locale),
                reported=reported,
                total=len(members),
            )
        ]
        missing = sorted((m for m in members.values() if not m.reported), key=lambda m: m.person_no)
        if missing:
            lines.append(_("Not reported yet ({count}):", count=len(missing)))
            shown = 0
            for member in missing[:LISTED]:
                line = (
                    f"{member.masked}（{member.person_no}）"
                    if locale == "zh_CN"
                    else f"{member.masked} ({member.person_no})"
                )
                if len("\n".join([*lines, line]).encode()) > MAX_BYTES - 100:
                    break
                lines.append(line)
                shown += 1
            if shown < len(missing):
                lines.append(_("… and {count} more.", count=len(missing) - shown))
        else:
            lines.append(_("Everyone has reported."))
        text = "\n".join(lines)
        return Push(person_id, "health_summary", text, f"health:summary:{day}:{person_id}")


def _reported(day: date) -> Exists:
    return exists().where(HealthReport.person_id == Person.id, HealthReport.day == day)
