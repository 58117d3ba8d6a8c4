"""The tracing services, built once per app (or per CLI run) from the settings and rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, SystemClock
from bot.settings import Settings
from campus.health.rules import HealthRules
from campus.health.services import Words
from campus.health.warnings import WarningService
from campus.links import LinkSigner
from campus.notifications import Notifications
from campus.tracing.incidents import IncidentService
from campus.tracing.rules import tracing_rules
from campus.tracing.service import TraceService


@dataclass(frozen=True, slots=True)
class TracingKit:
    tracing: TraceService
    incidents: IncidentService

    def as_services(self) -> dict[str, Any]:
        """By the parameter names handlers ask for."""
        return {"tracing": self.tracing, "incidents": self.incidents}


def tracing_kit(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    sections: Mapping[str, Any],
    source: str,
    health_rules: HealthRules,
    warnings: WarningService,
    notifications: Notifications,
    clock: Clock,
) -> TracingKit:
    rules = tracing_rules(sections, source)  # a bad tracing section stops start-up
    tracing = TraceService(
        sessions, rules, clock, settings.tz, LinkSigner(settings.data_key), settings.public_url
    )
    incidents = IncidentService(
        sessions, tracing, health_rules, warnings, notifications, settings.tz
    )
    return TracingKit(tracing, incidents)


def tracing_services(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    services: Mapping[str, Any],
    sections: Mapping[str, Any],
    source: str,
    clock: Clock,
) -> dict[str, Any]:
    """Needs the health services (rules, warnings) and notifications already built."""
    return tracing_kit(
        settings,
        sessions,
        sections,
        source,
        services["health_rules"],
        services["health_warnings"],
        services["notifications"],
        clock,
    ).as_services()


@asynccontextmanager
async def standalone(settings: Settings, words: Words) -> AsyncIterator[TracingKit]:
    """The tracing services outside the web app (the CLI), on their own engine."""
    from campus.health.services import health_kit, health_rules
    from campus.notifications import Schedule
    from campus.rules import load_rules
    from storage.engine import create_engine, session_factory

    rules = load_rules(settings.rules_file)
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        notifications = Notifications(sessions, Schedule(rules.quiet_hours, settings.tz))
        clock = SystemClock()
        kit = health_kit(
            sessions,
            health_rules(rules.sections, rules.source),
            notifications,
            clock,
            settings.tz,
            words,
        )
        yield tracing_kit(
            settings,
            sessions,
            rules.sections,
            rules.source,
            kit.rules,
            kit.warnings,
            notifications,
            clock,
        )
    finally:
        await engine.dispose()
