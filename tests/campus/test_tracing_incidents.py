"""Incidents (issue 10): open (red, trace, told), mark close contacts (yellow, told), show,
close; every push urgent, every action logged and audited; SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from campus.health.model import Status
from campus.tracing.incidents import IncidentView, Marked, Opened, Refusal, Refused
from storage.models import AuditEntry, OutboxMessage, Person, StatusChange
from storage.models_tracing import Incident, IncidentContact, IncidentLog
from tests.campus.test_tracing_support import (
    Places,
    at,
    incident_service,
    seed_places,
    visit,
)
from tests.health_support import SHANGHAI, Campus, open_campus

# 23:30 in Shanghai: inside the quiet hours (22:30–07:00), which incident pushes ignore.
NIGHT = datetime(2026, 3, 3, 23, 30, tzinfo=SHANGHAI)


@pytest.fixture(params=["sqlite", "postgresql"])
async def campus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Campus]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/i.db"
    else:
        url = request.getfixturevalue("postgres_url")
    async for c in open_campus(url, start=NIGHT):
        yield c


@pytest.fixture
async def places(campus: Campus) -> Places:
    places = await seed_places(campus.sessions)
    # S001 is the case: S002 and T001 (class CS-2101), W001 (contractor hosted by F004) and
    # P001 (partner hosted by the dean F002) shared the library with them; G001 did not.
    await visit(campus, places, "S001", "LIB", at(10, 0), at(12, 0))
    await visit(campus, places, "S002", "LIB", at(10, 30), at(11, 30))  # 60 min
    await visit(campus, places, "T001", "LIB", at(11, 0), at(13, 0))  # 75 min (to 12:15)
    await visit(campus, places, "W001", "LIB", at(11, 50), at(12, 30))  # 25 min
    await visit(campus, places, "P001", "LIB", at(9, 0), at(9, 50))  # 5 min
    await visit(campus, places, "G001", "CANTEEN", at(11, 0), at(11, 30))
    return places


async def outbox(c: Campus) -> list[tuple[str, str, bool, datetime, str]]:
    """(person_no, kind, urgent, not_before, text) of every push so far."""
    stmt = (
        select(
            Person.person_no,
            OutboxMessage.kind,
            OutboxMessage.urgent,
            OutboxMessage.not_before,
            OutboxMessage.payload,
        )
        .join(Person, Person.id == OutboxMessage.person_id)
        .order_by(OutboxMessage.id)
    )
    async with c.sessions() as session:
        rows = (await session.execute(stmt)).all()
    return [(no, kind, urgent, nb, payload["text"]) for no, kind, urgent, nb, payload in rows]


async def test_the_incident_lifecycle(campus: Campus, places: Places) -> None:
    incidents = incident_service(campus)
    officer = campus.ids["H001"]
    actor = f"person:{officer}"
    now = campus.now.astimezone(UTC)

    opened = await incidents.open("s001", "  核酸阳性  ", actor=actor, officer_id=officer)
    assert isinstance(opened, Opened)
    assert (opened.before, opened.after) == (Status.GREEN, Status.RED)
    ranked = [(c.person_no, c.overlap_minutes) for c in opened.trace.contacts]
    assert ranked == [("T001", 75), ("S002", 60), ("W001", 25), ("P001", 5)]
    iid = opened.incident_id
    assert await campus.status("S001") == "red"
    async with campus.sessions() as session:
        change = (
            await session.execute(
                select(StatusChange).where(StatusChange.person_id == campus.ids["S001"])
            )
        ).scalar_one()
        stored = (
            await session.execute(
                select(IncidentContact.rank, Person.person_no)
                .join(Person, Person.id == IncidentContact.person_id)
                .where(IncidentContact.incident_id == iid)
                .order_by(IncidentContact.rank)
            )
        ).all()
    # Stored like any override: cause, actor, the reason with the note, the rule version.
    assert (change.cause, change.actor, change.to_status) == ("override", actor, "red")
    assert json.loads(change.reasons)[0]["note"] == f"#{iid} 核酸阳性"
    assert [no for _rank, no in stored] == ["T001", "S002", "W001", "P001"]

    pushes = await outbox(campus)
    # The case and the class counsellor (F001) are told at once, in the quiet hours.
    assert {(no, kind) for no, kind, *_ in pushes} == {
        ("S001", "incident_case"),
        ("F001", "health_warning"),
    }
    assert all(urgent and nb <= now for _no, _kind, urgent, nb, _text in pushes)
    case_text = next(t for no, _k, _u, _n, t in pushes if no == "S001")
    assert "红码" in case_text and "核酸阳性" in case_text
    # The contacts are not told yet: the officer decides who is a close contact.

    again = await incidents.open("S001", "again", actor=actor, officer_id=officer)
    assert again == Refusal(Refused.ALREADY_OPEN, iid)

    # Mark two by person number (one of them twice, one not a contact at all).
    marked = await incidents.mark(
        iid, ["s002", "T001", "S002", "G001"], actor=actor, officer_id=officer
    )
    assert marked == Marked(iid, ["S002", "T001"], [], ["G001"])
    assert await campus.status("S002") == "yellow" and await campus.status("T001") == "yellow"
    assert await campus.status("G001") == "green"
    new = (await outbox(campus))[len(pushes) :]
    assert sorted((no, kind) for no, kind, *_ in new) == [
        ("F001", "close_contacts"),  # one push for both of their class
        ("S002", "close_contact"),
        ("T001", "close_contact"),
    ]
    assert all(urgent and nb <= now for _no, _kind, urgent, nb, _text in new)
    notice = next(t for no, _k, _u, _n, t in new if no == "S002")
    assert "图书馆" in notice and "黄码" in notice and "张三丰" not in notice  # the case unnamed
    to_counsellor = next(t for no, _k, _u, _n, t in new if no == "F001")
    assert "李*" in to_counsellor and "S002" in to_counsellor and "T001" in to_counsellor

    # A red contact stays red; the rest are marked; the marked ones are not marked twice.
    await campus.kit.status.override("P001", Status.RED, "fever", actor="test")
    before = len(await outbox(campus))
    rest = await incidents.mark(iid, None, actor=actor, officer_id=officer)
    assert rest == Marked(iid, ["W001", "P001"], [], [])
    assert await campus.status("P001") == "red" and await campus.status("W001") == "yellow"
    new = (await outbox(campus))[before:]
    # W001's host F004 also heads their unit: one push, not two. P001's host is the dean.
    assert sorted((no, kind) for no, kind, *_ in new) == [
        ("F002", "close_contacts"),
        ("F004", "close_contacts"),
        ("P001", "close_contact"),
        ("W001", "close_contact"),
    ]
    english = next(t for no, _k, _u, _n, t in new if no == "P001")
    assert "close contact" in english and "Red" in english
    assert await incidents.mark(iid, ["S002"], actor=actor, officer_id=officer) == Marked(
        iid, [], ["S002"], []
    )

    # Somebody else cannot act on it; unknown numbers are refused.
    student = campus.ids["S002"]
    assert await incidents.mark(iid, None, actor="x", officer_id=student) == Refusal(
        Refused.NOT_ALLOWED
    )
    assert await incidents.show(iid, actor="x", officer_id=student) == Refusal(Refused.NOT_ALLOWED)
    assert await incidents.close(999, "x", actor=actor) == Refusal(Refused.UNKNOWN_INCIDENT)

    campus.later(hours=2)
    view = await incidents.show(iid, actor=actor, officer_id=officer)
    assert isinstance(view, IncidentView) and view.state == "open"
    assert sum(1 for c in view.contacts if c.marked_at is not None) == 4
    closed = await incidents.close(iid, "隔离结束", actor=actor, officer_id=officer)
    assert isinstance(closed, IncidentView) and closed.state == "closed"
    assert await incidents.close(iid, "again", actor=actor) == Refusal(Refused.CLOSED, iid)
    assert await incidents.mark(iid, None, actor=actor) == Refusal(Refused.CLOSED, iid)

    async with campus.sessions() as session:
        incident = await session.get(Incident, iid)
        log = (
            await session.execute(
                select(IncidentLog.action, IncidentLog.detail)
                .where(IncidentLog.incident_id == iid)
                .order_by(IncidentLog.id)
            )
        ).all()
        audits = {
            a
            for (a,) in await session.execute(
                select(AuditEntry.action).where(AuditEntry.actor == actor)
            )
        }
    assert incident is not None and incident.closed_by == actor and incident.closed_at
    assert [a for a, _d in log] == [
        "opened",
        "status",
        "traced",
        "marked",
        "marked",
        "read",
        "closed",
    ]
    assert log[0][1] == "核酸阳性" and log[2][1] == "4 contacts, 14 days, margin 15 min"
    assert log[3][1] == "S002, T001" and log[-1][1] == "隔离结束"
    assert {
        "incident_open",
        "status_override",
        "trace",
        "close_contact",
        "incident_read",
        "incident_close",
    } <= audits
    # A new incident for the same person may be opened once this one is closed.
    assert isinstance(await incidents.open("S001", "second", actor=actor), Opened)


async def test_opening_for_a_red_person_keeps_their_status_and_reasons(
    campus: Campus, places: Places
) -> None:
    await campus.kit.status.override("S001", Status.RED, "hospital report", actor="test")
    incidents = incident_service(campus)
    opened = await incidents.open("S001", "confirmed", actor="cli")
    assert isinstance(opened, Opened) and opened.before is Status.RED
    async with campus.sessions() as session:
        changes = (
            await session.execute(
                select(StatusChange.to_status).where(StatusChange.person_id == campus.ids["S001"])
            )
        ).all()
        log = (await session.execute(select(IncidentLog.action, IncidentLog.detail))).all()
    assert len(changes) == 1  # only the earlier override
    assert ("status", "already red") in log
    # No new red warning (no change), so the counsellor is told by the incident itself.
    pushes = [(no, kind, urgent) for no, kind, urgent, _nb, _t in await outbox(campus)]
    assert ("F001", "incident_case", True) in pushes and ("S001", "incident_case", True) in pushes


async def test_refusals_change_nothing(campus: Campus, places: Places) -> None:
    incidents = incident_service(campus)
    assert await incidents.open("NOBODY", "x", actor="cli") == Refusal(Refused.UNKNOWN_PERSON)
    assert await incidents.open("S001", "   ", actor="cli") == Refusal(Refused.NO_NOTE)
    assert await incidents.open("S001", "x", actor="cli", days=0) == Refusal(Refused.BAD_WINDOW)
    assert await incidents.open("S001", "x", actor="x", officer_id=campus.ids["F001"]) == Refusal(
        Refused.NOT_ALLOWED
    )
    assert await incidents.mark(42, None, actor="cli") == Refusal(Refused.UNKNOWN_INCIDENT)
    assert await outbox(campus) == []
    assert await campus.status("S001") == "green"
    async with campus.sessions() as session:
        assert (await session.execute(select(Incident))).first() is None


async def test_an_incident_without_contacts(campus: Campus, places: Places) -> None:
    incidents = incident_service(campus)
    opened = await incidents.open("G001", "positive", actor="cli", days=1)
    assert isinstance(opened, Opened) and opened.trace.contacts == []
    assert await incidents.mark(opened.incident_id, None, actor="cli") == Marked(
        opened.incident_id, [], [], []
    )
    assert campus.now - timedelta(days=1) == opened.trace.window.since
