"""The simulator talks to the bot over HTTP only, like WeChat: it imports none of the bot."""

from __future__ import annotations

import ast
from pathlib import Path

import simulator

FORBIDDEN = {"bot", "handlers", "campus", "storage", "scheduler"}


def test_the_simulator_imports_nothing_of_the_bot() -> None:
    offenders = []
    for path in Path(simulator.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
