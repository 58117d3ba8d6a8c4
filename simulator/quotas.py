"""Per-endpoint daily call quotas (45009), off unless configured; days end at Beijing midnight."""

from __future__ import annotations

from collections import Counter

from simulator.clock import Clock
from simulator.errors import ApiError

_BEIJING_OFFSET = 8 * 3600


class DailyQuotas:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.limits: dict[str, int] = {}
        self._day = -1
        self._used: Counter[str] = Counter()

    def set_limit(self, path: str, per_day: int | None) -> None:
        if per_day is None:
            self.limits.pop(path, None)
        elif per_day < 0:
            raise ValueError(f"daily quota {per_day} for {path!r} is negative")
        else:
            self.limits[path] = per_day

    def spend(self, path: str) -> None:
        day = int((self._clock.time() + _BEIJING_OFFSET) // 86400)
        if day != self._day:
            self._day, self._used = day, Counter()
        limit = self.limits.get(path)
        if limit is not None and self._used[path] >= limit:
            raise ApiError(45009, f"{path} allows {limit} calls a day")
        self._used[path] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {"limits": dict(self.limits), "used_today": dict(self._used)}
