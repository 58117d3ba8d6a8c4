"""Reports per unit of finished campus days, kept in memory by the dashboard service.

A report always belongs to the campus day it is sent on, so once a day has ended its counts
never change: each process reads a finished day once (one GROUP BY over the whole campus, which
every scope then shares) and a page view aggregates only the live day(s). A day counts as
finished a few minutes after midnight, so a report that commits at 23:59:59 is not missed.
Persons are attributed to the unit they were in (and counted if active) when the day was read.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from campus.dashboard import queries
from campus.health.days import day_start

SETTLE = timedelta(minutes=10)


class DailyReports:
    def __init__(self, keep: int = 31) -> None:
        self._days: dict[date, dict[int, int]] = {}
        self._keep = keep

    @staticmethod
    def last_settled(today: date, now: datetime, tz: ZoneInfo) -> date:
        """The newest day whose counts are final."""
        yesterday = today - timedelta(days=1)
        return yesterday if now - day_start(today, tz) >= SETTLE else yesterday - timedelta(days=1)

    async def settled(
        self, session: AsyncSession, first: date, last: date
    ) -> dict[date, dict[int, int]]:
        """unit → reports, for each day first..last (all finished), read once per process."""
        wanted = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        missing = [d for d in wanted if d not in self._days]
        if missing:
            fill: dict[date, dict[int, int]] = {d: {} for d in missing}
            rows = await queries.reports_by_day(session, None, missing[0], missing[-1])
            for unit, day, n in rows:
                if day in fill:
                    fill[day][unit] = n
            self._days.update(fill)
            horizon = last - timedelta(days=self._keep)
            for day in [d for d in self._days if d < horizon]:
                del self._days[day]
        return {d: self._days[d] for d in wanted}
