"""Injected failures for tests and benchmarks: added latency, queued errcodes, an error rate."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class QueuedError:
    errcode: int
    path: str | None = None  # e.g. "/cgi-bin/message/custom/send"; None: whichever call is next


class Faults:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self.reset()

    def reset(self) -> None:
        self.latency_ms = 0
        self.path_latency_ms: dict[str, int] = {}
        self.error_rate = 0.0
        self.error_code = -1
        # Empty: the error rate applies to every API path.
        self.error_rate_paths: frozenset[str] = frozenset()
        self._queue: list[QueuedError] = []

    def configure(
        self,
        *,
        latency_ms: int | None = None,
        path_latency_ms: dict[str, int] | None = None,
        error_rate: float | None = None,
        error_code: int | None = None,
        error_rate_paths: Iterable[str] | None = None,
        errors: Iterable[QueuedError] = (),
    ) -> None:
        """Change only what is given; queued errors are appended to those already waiting."""
        if latency_ms is not None:
            if latency_ms < 0:
                raise ValueError(f"latency_ms {latency_ms} is negative")
            self.latency_ms = latency_ms
        if path_latency_ms is not None:
            if any(ms < 0 for ms in path_latency_ms.values()):
                raise ValueError("path_latency_ms values must not be negative")
            self.path_latency_ms = dict(path_latency_ms)
        if error_rate is not None:
            if not 0.0 <= error_rate <= 1.0:
                raise ValueError(f"error_rate {error_rate} is outside 0–1")
            self.error_rate = error_rate
        if error_code is not None:
            self.error_code = error_code
        if error_rate_paths is not None:
            self.error_rate_paths = frozenset(error_rate_paths)
        self._queue.extend(errors)

    def queue_error(self, errcode: int, path: str | None = None, times: int = 1) -> None:
        self._queue.extend(QueuedError(errcode, path) for _ in range(times))

    def delay_for(self, path: str) -> float:
        return (self.latency_ms + self.path_latency_ms.get(path, 0)) / 1000

    def take_error(self, path: str) -> int | None:
        for index, queued in enumerate(self._queue):
            if queued.path in (None, path):
                del self._queue[index]
                return queued.errcode
        applies = not self.error_rate_paths or path in self.error_rate_paths
        if applies and self.error_rate and self._rng.random() < self.error_rate:
            return self.error_code
        return None

    def snapshot(self) -> dict[str, object]:
        return {
            "latency_ms": self.latency_ms,
            "path_latency_ms": dict(self.path_latency_ms),
            "error_rate": self.error_rate,
            "error_code": self.error_code,
            "error_rate_paths": sorted(self.error_rate_paths),
            "queued": [{"errcode": q.errcode, "path": q.path} for q in self._queue],
        }
