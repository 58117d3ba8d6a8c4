"""Property: whatever people report, miss, and health officers override, the stored status
is the one the stored inputs give when recomputed (SQLite, frozen clock)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campus.health.checkin import Draft
from campus.health.model import Status
from tests.health_support import SHANGHAI, Campus, open_campus

PEOPLE = ("S001", "S002", "T001")
DRAFTS = {
    "normal": Draft(365),
    "quick": Draft(366, source="quick"),
    "fever": Draft(378),
    "fever_cough": Draft(380, frozenset({"cough"})),
    "contact": Draft(365, contact=True),
    "travel": Draft(365, location="elsewhere", region="湖北", travel=True),
}
report = st.tuples(st.just("report"), st.sampled_from(PEOPLE), st.sampled_from(sorted(DRAFTS)))
same = st.tuples(st.just("same"), st.sampled_from(PEOPLE), st.just(""))
override = st.tuples(
    st.just("override"), st.sampled_from(PEOPLE), st.sampled_from([s.value for s in Status])
)
time_passes = st.tuples(
    st.sampled_from(["later", "day", "day", "midnight"]), st.just(""), st.just("")
)
operations = st.lists(st.one_of(report, report, same, override, time_passes), max_size=30)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded database, copied for every example (migrating each time is slow)."""
    path = tmp_path_factory.mktemp("recompute") / "template.db"

    async def build() -> None:
        async for _campus in open_campus(f"sqlite+aiosqlite:///{path}"):
            pass

    asyncio.run(build())
    return path


async def play(campus: Campus, ops: list[tuple[str, str, str]]) -> None:
    for op, who, what in ops:
        if op == "report":
            await campus.kit.checkins.submit(campus.ids[who], DRAFTS[what])
        elif op == "same":
            await campus.kit.checkins.same_as_yesterday(campus.ids[who])
        elif op == "override":
            await campus.kit.status.override(who, Status(what), "by hand", actor="cli")
        elif op == "later":
            campus.later(hours=3)
        elif op == "midnight":  # just past midnight, before the roll-over runs
            tomorrow = campus.now.date() + timedelta(days=1)
            campus.at(datetime.combine(tomorrow, datetime.min.time(), SHANGHAI))
        else:
            campus.later(days=1)
            await campus.kit.rollovers.run()
        campus.later(minutes=1)
    await campus.kit.rollovers.run()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations)
def test_the_stored_status_is_the_recomputed_one(
    template: Path, ops: list[tuple[str, str, str]]
) -> None:
    async def run(path: Path) -> None:
        async for campus in open_campus(f"sqlite+aiosqlite:///{path}", seeded=True):
            await play(campus, ops)
            for person_no in PEOPLE:
                result = await campus.kit.status.recompute(person_no)
                assert result is not None
                assert result.agrees, (person_no, result.stored, result.computed)

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "h.db"
        shutil.copy(template, copy)
        asyncio.run(run(copy))
