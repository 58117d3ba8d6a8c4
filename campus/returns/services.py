"""The return feature's services, built once from the rules file (never per request)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from campus.notifications import Notifications
from campus.returns.applications import ReturnService
from campus.returns.approvals import Words
from campus.returns.arrival import ArrivalDesk
from campus.returns.config import parse_returns


def return_service(
    sessions: async_sessionmaker[AsyncSession],
    notifications: Notifications,
    sections: Mapping[str, Any],
    source: str,
    clock: Clock,
    tz: ZoneInfo,
    words: Words,
) -> ReturnService:
    # A bad `returns:` section stops start-up with an error naming the entry.
    return ReturnService(sessions, notifications, parse_returns(sections, source), clock, tz, words)


def return_services(
    sessions: async_sessionmaker[AsyncSession],
    notifications: Notifications,
    sections: Mapping[str, Any],
    source: str,
    clock: Clock,
    tz: ZoneInfo,
    words: Words,
) -> dict[str, Any]:
    """By the parameter names handlers ask for: `returns`, and `arrivals` (the gate hook)."""
    service = return_service(sessions, notifications, sections, source, clock, tz, words)
    return {"returns": service, "arrivals": ArrivalDesk(notifications, service.rules, tz)}
