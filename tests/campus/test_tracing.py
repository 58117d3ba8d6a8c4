"""The trace (issue 10): overlaps, margins, touching ranges, open visits, time zones, subtree
matching and retention, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from campus.links import BadLink
from campus.tracing.query import Contact, Window, trace
from campus.tracing.retention import purge_access_records
from campus.tracing.rules import TracingRules, tracing_rules
from campus.tracing.service import TraceRefused, TraceResult, write_csv
from storage.models import AccessRecord, AuditEntry
from tests.campus.test_tracing_support import Places, at, seed_places, tracing_service, visit
from tests.health_support import SHANGHAI, START, Campus, open_campus

RULES = TracingRules()


@pytest.fixture(params=["sqlite", "postgresql"])
async def campus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Campus]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/t.db"
    else:
        url = request.getfixturevalue("postgres_url")
    async for c in open_campus(url, start=START + timedelta(days=2)):
        yield c


@pytest.fixture
async def places(campus: Campus) -> Places:
    return await seed_places(campus.sessions)


async def contacts_of(
    c: Campus,
    person_no: str,
    *,
    days: int = 14,
    margin: int = 15,
    rules: TracingRules = RULES,
    subtree: bool | None = None,
) -> dict[str, Contact]:
    window = Window(c.now - timedelta(days=days), c.now, timedelta(minutes=margin))
    async with c.sessions() as session:
        found = await trace(
            session, c.ids[person_no], window, rules, now=c.now.astimezone(UTC), subtree=subtree
        )
    return {contact.person_no: contact for contact in found}


# --- overlaps and margins ----------------------------------------------------------------


async def test_overlapping_visits_at_the_same_place_are_contacts(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "LIB", at(10, 0), at(11, 0))
    await visit(campus, places, "S002", "LIB", at(10, 30), at(12, 0))
    await visit(campus, places, "T001", "CANTEEN", at(10, 30), at(11, 0))  # elsewhere
    found = await contacts_of(campus, "S001")
    assert set(found) == {"S002"}
    contact = found["S002"]
    # The case's visit widened by 15 min is 09:45–11:15; S002 was there 10:30–12:00.
    assert contact.overlap_minutes == 45
    (encounter,) = contact.encounters
    assert encounter.place_code == "LIB"
    assert encounter.start == at(10, 30) and encounter.end == at(12, 0)
    assert (encounter.overlap_from, encounter.overlap_to) == (at(10, 30), at(11, 15))


async def test_the_margin_widens_the_case_visit_on_both_sides(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "LIB", at(10, 0), at(11, 0))
    await visit(campus, places, "S002", "LIB", at(11, 10), at(11, 40))  # 10 min after
    await visit(campus, places, "T001", "LIB", at(11, 20), at(12, 0))  # 20 min after
    await visit(campus, places, "F001", "LIB", at(9, 0), at(9, 50))  # left 10 min before
    found = await contacts_of(campus, "S001")
    assert set(found) == {"S002", "F001"}
    assert found["S002"].overlap_minutes == 5 and found["F001"].overlap_minutes == 5
    assert set(await contacts_of(campus, "S001", margin=30)) == {"S002", "T001", "F001"}
    assert set(await contacts_of(campus, "S001", margin=0)) == set()


async def test_touching_ranges_are_not_contacts(campus: Campus, places: Places) -> None:
    """One visit ending the instant the other begins is no contact: the margin is the
    tolerance, and with margin 0 only a real overlap counts."""
    await visit(campus, places, "S001", "LIB", at(10, 0), at(11, 0))
    await visit(campus, places, "S002", "LIB", at(11, 0), at(12, 0))  # begins as the case left
    await visit(campus, places, "T001", "LIB", at(9, 0), at(10, 0))  # left as the case came
    await visit(campus, places, "F001", "LIB", at(10, 59), at(12, 0))  # one minute together
    assert set(await contacts_of(campus, "S001", margin=0)) == {"F001"}
    # With the margin, touching the widened range (11:15) is no contact either.
    await visit(campus, places, "P001", "LIB", at(11, 15), at(12, 0))
    await visit(campus, places, "W001", "LIB", at(9, 0), at(9, 45))
    assert set(await contacts_of(campus, "S001", margin=15)) == {"S002", "T001", "F001"}


async def test_a_visit_without_exit_lasts_the_place_kinds_dwell(
    campus: Campus, places: Places
) -> None:
    # library dwell: 180 min, so the case's open visit is 10:00–13:00
    await visit(campus, places, "S001", "LIB", at(10, 0))
    await visit(campus, places, "S002", "LIB", at(13, 10), at(14, 0))  # inside the margin
    await visit(campus, places, "T001", "LIB", at(13, 20), at(14, 0))  # 20 min after
    await visit(campus, places, "F001", "LIB", at(7, 30))  # open too: 07:30–10:30
    await visit(campus, places, "F002", "LIB", at(6, 30))  # 06:30–09:30, beyond the margin
    found = await contacts_of(campus, "S001")
    assert set(found) == {"S002", "F001"}
    assert found["F001"].overlap_minutes == 45  # 09:45–10:30
    shorter = TracingRules(dwell_minutes={**RULES.dwell_minutes, "library": 60})
    assert set(await contacts_of(campus, "S001", rules=shorter)) == set()


async def test_a_late_exit_or_a_new_entry_closes_a_visit(campus: Campus, places: Places) -> None:
    # An exit a day later (past max_stay_hours) does not stretch the visit: dwell applies.
    await visit(campus, places, "S001", "LIB", at(10, 0), at(10, 0) + timedelta(hours=24))
    await visit(campus, places, "S002", "LIB", at(17, 0), at(18, 0))
    await visit(campus, places, "T001", "LIB", at(12, 30), at(13, 0))
    assert set(await contacts_of(campus, "S001")) == {"T001"}
    # A second entry with no exit between closes the first visit.
    await visit(campus, places, "F001", "CANTEEN", at(8, 0))
    await visit(campus, places, "F001", "CANTEEN", at(8, 10), at(8, 20))
    await visit(campus, places, "F002", "CANTEEN", at(8, 40), at(9, 0))
    found = await contacts_of(campus, "F001", margin=5)
    assert set(found) == set()  # F001 left at 08:20; F002 came at 08:40


async def test_refused_entries_strangers_and_the_case_itself_are_not_contacts(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "LIB", at(10, 0), at(11, 0))
    await visit(campus, places, "S001", "LIB", at(10, 20), at(10, 40))  # the case again
    await visit(campus, places, "S002", "LIB", at(10, 30), allowed=False)  # turned away
    await visit(campus, places, None, "LIB", at(10, 30))  # a code that did not verify
    await visit(campus, places, "T001", "LIB", at(10, 30), at(10, 45))
    assert set(await contacts_of(campus, "S001")) == {"T001"}


async def test_contacts_are_ranked_by_overlap_without_double_counting(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "LIB", at(8, 0), at(9, 0))
    await visit(campus, places, "S001", "CANTEEN", at(12, 0), at(12, 30))
    await visit(campus, places, "S002", "LIB", at(8, 40), at(9, 0))  # 20 min
    await visit(campus, places, "S002", "CANTEEN", at(12, 0), at(12, 30))  # 30 min
    await visit(campus, places, "T001", "LIB", at(7, 0), at(10, 0))  # 90 min (07:45–09:15)
    await visit(campus, places, "F001", "CANTEEN", at(12, 20), at(12, 25))  # 5 min
    found = list((await contacts_of(campus, "S001")).values())
    assert [(c.person_no, c.overlap_minutes) for c in found] == [
        ("T001", 90),
        ("S002", 50),
        ("F001", 5),
    ]
    assert found[1].main.place_code == "CANTEEN" and len(found[1].encounters) == 2


# --- time zones ----------------------------------------------------------------------------


async def test_times_are_compared_in_utc_whatever_zone_they_were_written_in(
    campus: Campus, places: Places
) -> None:
    """07:50–08:10 in Shanghai is 23:50–00:10 UTC: the visit crosses the UTC midnight."""
    case_in = at(7, 50)
    assert case_in.astimezone(UTC).hour == 23
    await visit(campus, places, "S001", "GATE-N", case_in, at(8, 10))
    # Written as UTC datetimes: the same instants.
    await visit(
        campus, places, "S002", "GATE-N", at(8, 5).astimezone(UTC), at(8, 20).astimezone(UTC)
    )
    async with campus.sessions() as session:
        stored = await session.scalar(
            select(AccessRecord.at).where(AccessRecord.person_id == campus.ids["S002"])
        )
    assert stored is not None and stored.tzinfo is not None and stored.utcoffset() == timedelta(0)
    found = await contacts_of(campus, "S001")
    (encounter,) = found["S002"].encounters
    assert encounter.start == at(8, 5) and encounter.overlap_to == at(8, 20)
    # The CSV shows campus time, with its offset.
    service = tracing_service(campus)
    result = await service.run("S001", actor="test", until=campus.now.astimezone(UTC))
    assert isinstance(result, TraceResult)
    out = io.StringIO()
    assert write_csv(result, out, SHANGHAI) == 1
    header, row = out.getvalue().splitlines()
    assert header.startswith("rank,person_no,name,unit,overlap_minutes,place_code")
    assert ",S002,李四,计算机2101班,15,GATE-N," in row
    assert f"{at(8, 5).date().isoformat()}T08:05+08:00" in row


# --- subtree ----------------------------------------------------------------------------


async def test_subtree_matching_joins_the_places_of_one_building(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "DORM-1-101", at(20, 0), at(21, 0))
    await visit(campus, places, "S002", "DORM-1-102", at(20, 30), at(21, 30))  # next room
    await visit(campus, places, "T001", "DORM-1", at(20, 50), at(21, 0))  # the dorm's door
    await visit(campus, places, "F001", "DORM-2", at(20, 30), at(21, 0))  # another dorm
    await visit(campus, places, "F002", "GATE-N", at(20, 30), at(20, 35))  # campus gate
    assert set(await contacts_of(campus, "S001")) == set()
    assert set(await contacts_of(campus, "S001", subtree=True)) == {"S002", "T001"}
    # From the door, the building is the same: the rooms' visitors are contacts.
    assert set(await contacts_of(campus, "T001", subtree=True)) == {"S001", "S002"}
    assert set(await contacts_of(campus, "T001", subtree=False)) == set()
    rules = tracing_rules({"tracing": {"subtree": True}})
    assert set(await contacts_of(campus, "S001", rules=rules)) == {"S002", "T001"}


# --- retention and the window ----------------------------------------------------------


async def test_tracing_never_reads_past_retention_and_the_job_deletes_old_records(
    campus: Campus, places: Places
) -> None:
    old = campus.now - timedelta(days=29)
    await visit(campus, places, "S001", "LIB", old, old + timedelta(hours=1))
    await visit(campus, places, "S002", "LIB", old, old + timedelta(hours=1))
    recent = campus.now - timedelta(days=20)
    await visit(campus, places, "S001", "LIB", recent, recent + timedelta(hours=1))
    await visit(campus, places, "T001", "LIB", recent, recent + timedelta(hours=1))
    assert set(await contacts_of(campus, "S001")) == set()  # the default 14 days
    assert set(await contacts_of(campus, "S001", days=25)) == {"T001"}
    assert set(await contacts_of(campus, "S001", days=60)) == {"T001"}  # not S002: too old

    deleted = await purge_access_records(campus.sessions, campus.now.astimezone(UTC), 28, chunk=1)
    assert deleted == 4  # two visits of two records each
    async with campus.sessions() as session:
        left = await session.scalar(select(func.count()).select_from(AccessRecord))
    assert left == 4
    assert set(await contacts_of(campus, "S001", days=25)) == {"T001"}


def test_the_retention_job_is_scheduled_and_the_rules_are_checked() -> None:
    from campus.rules import RulesError, load_rules
    from scheduler.jobs import JOBS

    rules = load_rules()
    assert "access_retention" in JOBS and rules.scheduled("access_retention") is not None
    shipped = tracing_rules(rules.sections)
    assert (shipped.retention_days, shipped.days, shipped.margin_minutes) == (28, 14, 15)
    assert shipped.dwell("gate") == timedelta(minutes=5)
    for bad, named in [
        ({"retention_days": 0}, "tracing.retention_days"),
        ({"days": 30}, "tracing.days 30 is longer"),
        ({"dwell_minutes": {"tent": 5}}, "unknown place kind 'tent'"),
        ({"dwell_minutes": {"gate": "5"}}, "tracing.dwell_minutes.gate"),
        ({"subtree": "yes"}, "tracing.subtree"),
        ({"building_kinds": ["castle"]}, "tracing.building_kinds"),
        ({"margin": 5}, "unknown keys ['margin']"),
    ]:
        with pytest.raises(RulesError, match=re.escape(named)):
            tracing_rules({"tracing": bad}, "rules.yaml")


# --- the service: audit, refusals, the signed link ---------------------------------------


async def test_a_trace_is_audited_and_its_link_opens_the_same_list(
    campus: Campus, places: Places
) -> None:
    await visit(campus, places, "S001", "LIB", at(10, 0), at(11, 0))
    await visit(campus, places, "S002", "LIB", at(10, 30), at(12, 0))
    service = tracing_service(campus)
    officer = campus.ids["H001"]
    assert await service.run("S001", actor="x", officer_id=campus.ids["S002"]) is (
        TraceRefused.NOT_ALLOWED
    )
    assert await service.run("NOBODY", actor="x") is TraceRefused.UNKNOWN_PERSON
    assert await service.run("S001", actor="x", days=0) is TraceRefused.BAD_WINDOW
    result = await service.run(" s001 ", actor=f"person:{officer}", officer_id=officer)
    assert isinstance(result, TraceResult) and [c.person_no for c in result.contacts] == ["S002"]
    url = service.link(result, officer, "en")
    assert url.startswith("http://127.0.0.1:8080/trace?t=")
    token = url.split("t=", 1)[1]
    campus.later(minutes=5)
    opened = await service.open_link(token)
    assert not isinstance(opened, TraceRefused | BadLink)
    again, locale = opened
    assert locale == "en" and [c.person_no for c in again.contacts] == ["S002"]
    async with campus.sessions() as session:
        actions = (
            await session.execute(
                select(AuditEntry.action, AuditEntry.actor).where(
                    AuditEntry.subject_person_id == campus.ids["S001"]
                )
            )
        ).all()
    assert (("trace", f"person:{officer}") in actions) and (
        ("trace_read", f"person:{officer}") in actions
    )
    campus.later(minutes=11)  # 16 minutes after it was signed
    expired = await service.open_link(token)
    assert isinstance(expired, BadLink) and expired.reason == "expired"
    assert getattr(await service.open_link(token[:-3] + "AAA"), "reason", "") == "forged"
