"""The simulator's clock: injectable, and movable forward so tests can expire things."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class OffsetClock:
    """Another clock plus an offset, so `POST _control {"advance_seconds"}` can move time."""

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.offset = 0.0

    def time(self) -> float:
        return self.base.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
