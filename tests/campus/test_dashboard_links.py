"""Who gets a dashboard link, what it carries, what it opens, and every way it is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from bot.clock import FrozenClock
from campus.dashboard.service import DashboardRefused, DashboardService, Refusal
from campus.links import BadLink, LinkSigner
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import AuditEntry, Person, UnitResponsible
from tests.campus.test_dashboard_queries import NOW, SHANGHAI, Env, seed_dashboard
from tests.support import DATA_KEY


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/links.db")
    await upgrade(engine)
    sessions = session_factory(engine)
    seeded = await seed_dashboard(sessions)
    clock = FrozenClock(NOW.timestamp())
    service = DashboardService(
        sessions, LinkSigner(DATA_KEY), clock, SHANGHAI, "https://hc.example/"
    )
    try:
        yield Env(sessions, service, seeded)
    finally:
        await engine.dispose()


def token_of(url: str) -> str:
    assert url.startswith("https://hc.example/dashboard?t=")
    return url.split("t=", 1)[1]


def claims_of(token: str) -> dict[str, Any]:
    body = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


async def test_links_carry_ids_only_and_the_right_scope(env: Env) -> None:
    ids, units = env.seeded.ids, env.seeded.units
    admin = await env.service.offer(ids["A001"], "zh_CN")
    assert admin.expires_at == NOW + timedelta(minutes=15)
    doc = claims_of(token_of(admin.url))
    assert doc["k"] == "dashboard"
    assert doc["c"] == {"p": ids["A001"], "u": "all", "l": "zh_CN"}
    officer = claims_of(token_of((await env.service.offer(ids["H001"], "en")).url))
    assert officer["c"] == {"p": ids["H001"], "u": "all", "l": "en"}
    dean = claims_of(token_of((await env.service.offer(ids["F002"], "zh_CN")).url))
    assert dean["c"] == {"p": ids["F002"], "u": [units["CS"]], "l": "zh_CN"}
    assert "刘" not in json.dumps(dean, ensure_ascii=False)

    with pytest.raises(DashboardRefused) as refused:
        await env.service.offer(ids["R009"], "zh_CN")  # responsible for no unit
    assert refused.value.reason is Refusal.NO_UNITS
    with pytest.raises(DashboardRefused) as refused:
        await env.service.offer(ids["N001"], "zh_CN")  # no viewer role
    assert refused.value.reason is Refusal.NOT_ALLOWED
    with pytest.raises(DashboardRefused) as refused:
        await env.service.offer(ids["S01"], "zh_CN")
    assert refused.value.reason is Refusal.NOT_ALLOWED


async def test_a_responsible_person_sees_their_units_only(env: Env) -> None:
    ids = env.seeded.ids
    token = token_of((await env.service.offer(ids["F002"], "zh_CN")).url)
    view = await env.service.open(token)
    assert view.focus_code == "CS" and view.tops == (("CS", "计算机学院"),)
    assert view.dashboard.focus.persons == 15
    assert [r.code for r in view.dashboard.rows] == ["CS-2101", "CS-2102"]
    assert view.dashboard.path == [("CS", "计算机学院")]  # nothing above their unit
    assert not view.dashboard.everything
    assert (await env.service.open(token, "CS-2101")).dashboard.focus.persons == 10
    for outside in ("MED", "MED-2101", "UNIV", "NOPE"):
        with pytest.raises(DashboardRefused) as refused:
            await env.service.open(token, outside)
        assert refused.value.reason is Refusal.UNKNOWN_UNIT

    counsellor = token_of((await env.service.offer(ids["F001"], "zh_CN")).url)
    view = await env.service.open(counsellor)
    assert view.focus_code == "CS-2101" and view.dashboard.focus.persons == 10
    with pytest.raises(DashboardRefused):
        await env.service.open(counsellor, "CS")


async def test_an_admin_sees_everything_and_the_view_is_audited(env: Env) -> None:
    ids = env.seeded.ids
    token = token_of((await env.service.offer(ids["A001"], "en")).url)
    view = await env.service.open(token, "MED")
    assert view.locale == "en" and view.dashboard.focus.persons == 4
    view = await env.service.open(token)
    assert view.focus_code == "UNIV" and view.dashboard.everything
    async with env.sessions() as s:
        rows = (
            await s.execute(
                select(AuditEntry.actor, AuditEntry.action, AuditEntry.subject_person_id).order_by(
                    AuditEntry.id
                )
            )
        ).all()
    actor = f"person:{ids['A001']}"
    views = [r for r in rows if r.action == "dashboard"]
    assert [(r.actor, r.subject_person_id) for r in views] == [(actor, None), (actor, None)]
    # The whole-campus view listed three masked names; each subject's read is on record.
    reads = {r.subject_person_id for r in rows if r.action == "read" and r.actor == actor}
    assert reads == {ids["S08"], ids["S09"], ids["S10"]}


@pytest.mark.parametrize("kind", ["forged", "expired", "wrong_kind", "malformed"])
async def test_bad_links_are_refused(env: Env, kind: str) -> None:
    url = (await env.service.offer(env.seeded.ids["A001"], "zh_CN")).url
    token = token_of(url)
    if kind == "forged":
        token = LinkSigner("another-key").sign(
            "dashboard",
            claims_of(token)["c"],
            NOW,
            timedelta(minutes=15),
        )
    elif kind == "expired":
        clock = env.service._clock
        assert isinstance(clock, FrozenClock)
        clock.advance(15 * 60)
    elif kind == "wrong_kind":
        token = LinkSigner(DATA_KEY).sign(
            "trace",
            claims_of(token)["c"],
            NOW,
            timedelta(minutes=15),
        )
    else:
        token = LinkSigner(DATA_KEY).sign(
            "dashboard", {"p": "A001", "u": "all", "l": "zh_CN"}, NOW, timedelta(minutes=15)
        )
    with pytest.raises(BadLink) as refused:
        await env.service.open(token)
    assert refused.value.reason == kind


async def test_a_role_change_is_in_force_at_the_next_view(env: Env) -> None:
    """The link outlives no role change: every view re-reads the person."""
    ids, units = env.seeded.ids, env.seeded.units
    dean = token_of((await env.service.offer(ids["F002"], "zh_CN")).url)
    admin = token_of((await env.service.offer(ids["A001"], "zh_CN")).url)

    # The dean now answers for the medical school instead: the link (CS) shows nothing.
    async with env.sessions.begin() as s:
        await s.execute(delete(UnitResponsible).where(UnitResponsible.person_no == "F002"))
        s.add(UnitResponsible(unit_id=units["MED"], person_no="F002"))
    with pytest.raises(DashboardRefused) as refused:
        await env.service.open(dean)
    assert refused.value.reason is Refusal.NO_UNITS

    # The admin is demoted to a class counsellor: an "all" link shows that class only.
    async with env.sessions.begin() as s:
        await s.execute(update(Person).where(Person.id == ids["A001"]).values(roles="responsible"))
        await s.execute(delete(UnitResponsible).where(UnitResponsible.person_no == "A001"))
        s.add(UnitResponsible(unit_id=units["CS-2101"], person_no="A001"))
    view = await env.service.open(admin)
    assert view.focus_code == "CS-2101" and view.dashboard.focus.persons == 10

    # … then leaves: nothing at all.
    async with env.sessions.begin() as s:
        await s.execute(update(Person).where(Person.id == ids["A001"]).values(state="inactive"))
    with pytest.raises(DashboardRefused) as refused:
        await env.service.open(admin)
    assert refused.value.reason is Refusal.NOT_ALLOWED


async def test_units_in_two_branches_show_side_by_side(env: Env) -> None:
    ids, units = env.seeded.ids, env.seeded.units
    async with env.sessions.begin() as s:
        s.add(UnitResponsible(unit_id=units["MED-2101"], person_no="F001"))
    token = token_of((await env.service.offer(ids["F001"], "zh_CN")).url)
    view = await env.service.open(token)
    assert view.focus_code is None and not view.campus_wide
    assert view.tops == (("CS-2101", "计算机2101班"), ("MED-2101", "临床2101班"))
    assert [r.code for r in view.dashboard.rows] == ["CS-2101", "MED-2101"]
    assert view.dashboard.focus.persons == 14 and view.dashboard.path == []
    assert (await env.service.open(token, "MED-2101")).dashboard.focus.persons == 4
