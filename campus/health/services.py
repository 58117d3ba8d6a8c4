"""The health services, built once from the rules file's sections (never per request)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock
from bot.i18n import LOCALES
from bot.settings import Settings
from campus.health.checkin import CheckinService
from campus.health.reminders import ReminderService
from campus.health.rollover import RolloverService
from campus.health.rules import HealthRules, RulesError, parse
from campus.health.status import StatusService
from campus.health.warnings import WarningService
from campus.notifications import Notifications, Schedule


class Word(Protocol):
    def text(self, locale: str) -> str: ...


@dataclass(frozen=True, slots=True)
class Words:
    """The chat commands that pushes tell people to send (handlers/keywords.py owns them)."""

    checkin: Word
    ack: Word
    set_status: Word

    @staticmethod
    def by_locale(word: Word) -> dict[str, str]:
        return {locale: word.text(locale) for locale in LOCALES}


def health_rules(sections: Mapping[str, Any], source: str = "rules file") -> HealthRules:
    try:
        return parse(sections)
    except RulesError as exc:
        raise RulesError(f"{source}: {exc}") from None


@dataclass(frozen=True, slots=True)
class HealthKit:
    rules: HealthRules
    warnings: WarningService
    checkins: CheckinService
    status: StatusService
    rollovers: RolloverService
    reminders: ReminderService

    def as_services(self) -> dict[str, Any]:
        """By the parameter names handlers ask for."""
        return {
            "health_rules": self.rules,
            "health_warnings": self.warnings,
            "checkins": self.checkins,
            "health_status": self.status,
            "rollovers": self.rollovers,
            "reminders": self.reminders,
        }


def health_kit(
    sessions: async_sessionmaker[AsyncSession],
    rules: HealthRules,
    notifications: Notifications,
    clock: Clock,
    tz: ZoneInfo,
    words: Words,
) -> HealthKit:
    warnings = WarningService(
        sessions,
        rules,
        notifications,
        clock,
        tz,
        ack_words=Words.by_locale(words.ack),
        set_status_words=Words.by_locale(words.set_status),
    )
    return HealthKit(
        rules=rules,
        warnings=warnings,
        checkins=CheckinService(sessions, rules, warnings, clock, tz),
        status=StatusService(sessions, rules, warnings, notifications, clock, tz),
        rollovers=RolloverService(sessions, rules, warnings, clock, tz),
        reminders=ReminderService(
            sessions, notifications, clock, tz, Words.by_locale(words.checkin)
        ),
    )


def health_services(
    sessions: async_sessionmaker[AsyncSession],
    rules: HealthRules,
    notifications: Notifications,
    clock: Clock,
    tz: ZoneInfo,
    words: Words,
) -> dict[str, Any]:
    return health_kit(sessions, rules, notifications, clock, tz, words).as_services()


@asynccontextmanager
async def standalone(settings: Settings, words: Words) -> AsyncIterator[HealthKit]:
    """The health services outside the web app (the CLI), on their own engine."""
    from campus.rules import load_rules
    from storage.engine import create_engine, session_factory

    rules = load_rules(settings.rules_file)
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        notifications = Notifications(sessions, Schedule(rules.quiet_hours, settings.tz))
        yield health_kit(
            sessions,
            health_rules(rules.sections, rules.source),
            notifications,
            SystemClock(),
            settings.tz,
            words,
        )
    finally:
        await engine.dispose()
