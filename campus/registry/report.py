"""The outcome of one import: counts, and every problem with its line number."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from campus.registry.csvfile import BAD_ROW, Rows


@dataclass
class ImportReport:
    kind: str
    dry_run: bool = False
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Persons whose stored row the import changed: their cached principals are dropped.
    changed_persons: list[int] = field(default_factory=list, repr=False)
    _problems: list[tuple[int, int, str]] = field(default_factory=list, repr=False)

    def add(self, line: int, column: str | None, reason: str) -> None:
        """Record a problem; `reason` must name the bad value, masked if it is personal data."""
        where = f"{column}: " if column else ""
        self._problems.append((line, len(self._problems), f"line {line}: {where}{reason}"))

    def fail(self, reason: str) -> None:
        """Record a problem of the whole file or run, not of one line."""
        self._problems.append((0, len(self._problems), reason))

    @property
    def errors(self) -> list[str]:
        """Problems in file order (checks across rows find some of them late)."""
        return [text for _, _, text in sorted(self._problems)]

    @property
    def ok(self) -> bool:
        return not self._problems

    def summary(self) -> str:
        rows = _plural(self.rows, "row")
        if self._problems:
            return f"{self.kind}: {rows}, {_plural(len(self._problems), 'error')}; nothing written"
        text = (
            f"{self.kind}: {rows}, {self.created} created, {self.updated} updated, "
            f"{self.unchanged} unchanged"
        )
        return text + " (dry run, nothing written)" if self.dry_run else text

    def rows_of(self, rows: Rows) -> Iterator[tuple[int, dict[str, str]]]:
        """Count the rows and pass on the well-formed ones, reporting the others."""
        for line, row in rows:
            self.rows += 1
            if BAD_ROW in row:
                self.add(line, None, row[BAD_ROW])
            else:
                yield line, row


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
