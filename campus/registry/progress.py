"""Progress of the write phase: a bar on a terminal, nothing elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import click

from campus.registry.bulk import Advance

Progress = Callable[[str, int], AbstractContextManager[Advance]]


@contextmanager
def no_progress(label: str, total: int) -> Iterator[Advance]:
    yield lambda n: None


@contextmanager
def terminal_progress(label: str, total: int) -> Iterator[Advance]:
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def default_progress() -> Progress:
    return terminal_progress if sys.stderr.isatty() else no_progress
