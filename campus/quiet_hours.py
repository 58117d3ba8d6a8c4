"""Quiet hours: when a non-urgent push falls due at night, it waits until the morning."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

DEFAULT_START = time(22, 30)
DEFAULT_END = time(7, 0)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window [start, end) in the campus time zone; start > end spans midnight."""

    start: time = DEFAULT_START
    end: time = DEFAULT_END
    enabled: bool = True

    def contains(self, local: time) -> bool:
        if not self.enabled or self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def release(self, due: datetime, tz: ZoneInfo, *, urgent: bool = False) -> datetime:
        """When a push due at `due` may go: `due` itself, or the end of the quiet window.

        Returns an aware UTC datetime. The window's end is computed on the local calendar, so
        a daylight-saving change in the campus time zone moves it with the clock.
        """
        if due.tzinfo is None:
            raise ValueError("naive datetime given to QuietHours.release")
        local = due.astimezone(tz)
        if urgent or not self.contains(local.time()):
            return due.astimezone(UTC)
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)  # evening part of a window that ends tomorrow morning
        end = datetime.combine(day, self.end, tzinfo=tz)
        return end.astimezone(UTC)
