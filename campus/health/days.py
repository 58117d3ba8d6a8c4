"""Campus days: a report belongs to the calendar day of the campus time zone, not UTC's."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.clock import Clock


def now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.time(), UTC)


def campus_day(at: datetime, tz: ZoneInfo) -> date:
    if at.tzinfo is None:
        raise ValueError("naive datetime given to campus_day")
    return at.astimezone(tz).date()


def day_start(day: date, tz: ZoneInfo) -> datetime:
    """The campus midnight that begins `day`, in UTC."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def at_local(day: date, hour: int, minute: int, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def days_back(day: date, n: int) -> date:
    """The first day of an n-day window ending with `day`."""
    return day - timedelta(days=n - 1)
