"""Arrival at the gate: a guard's scan of a student with an open return application.

Called by the access service (campus/access/gate.py) inside the scan's own transaction, for
an entry at a place of kind `gate` by a person not yet back. Approved, and scanned on the
approved day (± `arrival_tolerance_days`): the arrival is recorded, `Person.returned_at` is
set (what the `returned_only` policy and meal ordering check), and the student and their
counsellor are told through the outbox. Otherwise the entry is refused with the reason.
A person without an open application is left to the place's policy.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, ColumnExpressionArgument, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import Translate
from campus import audit
from campus.access.gate import GateNote
from campus.access.places import PlaceInfo
from campus.identity import mask_name
from campus.notifications import Notifications
from campus.returns.approvals import ref, step_approvers
from campus.returns.config import ReturnRules
from storage.models import Person
from storage.models_returns import ReturnApplication, ReturnBatch

PENDING, TOO_EARLY, TOO_LATE = "pending", "too_early", "too_late"


class ArrivalDesk:
    def __init__(self, notifications: Notifications, rules: ReturnRules, tz: ZoneInfo) -> None:
        self._notifications = notifications
        self._rules = rules
        self._tz = tz

    def concerns(self, person_id: ColumnExpressionArgument[int]) -> ColumnElement[bool]:
        """Whether the person has an open (pending or approved) application: only then is
        the desk asked, so a gate scan of anyone else makes no query of applications."""
        return exists().where(ReturnApplication.person_id == person_id, ReturnApplication.live == 1)

    async def __call__(
        self, session: AsyncSession, person_id: int, place: PlaceInfo, at: datetime
    ) -> GateNote | None:
        app = await session.scalar(
            select(ReturnApplication)
            .where(ReturnApplication.person_id == person_id, ReturnApplication.live == 1)
            .with_for_update()
        )
        if app is None:
            return None
        if app.state != "approved":
            return GateNote(False, PENDING, app.arrive_on)
        day = at.astimezone(self._tz).date()
        offset = (day - app.arrive_on).days
        if offset < -self._rules.arrival_tolerance_days:
            return GateNote(False, TOO_EARLY, app.arrive_on)
        if offset > self._rules.arrival_tolerance_days:
            return GateNote(False, TOO_LATE, app.arrive_on)
        app.state, app.live = "arrived", None
        app.arrived_at, app.arrived_on, app.arrival_place_id = at, day, place.id
        app.updated_at = at
        await session.execute(update(Person).where(Person.id == person_id).values(returned_at=at))
        audit.record(session, "gate", "arrive", person_id, f"return {ref(app.id)}")
        await self._tell(session, app, place, at)
        return GateNote(True, "", app.arrive_on)

    async def _tell(
        self, session: AsyncSession, app: ReturnApplication, place: PlaceInfo, at: datetime
    ) -> None:
        person = await session.get(Person, app.person_id)
        assert person is not None
        when = f"{at.astimezone(self._tz):%Y-%m-%d %H:%M}"
        gate = place.name

        def own(_: Translate) -> str:
            return _(
                "Welcome back! Your arrival was recorded at {gate} at {time}. Your dorm and "
                "meal ordering are open to you now.",
                gate=gate,
                time=when,
            )

        await self._notifications.enqueue(
            session,
            person_id=person.id,
            kind="return_arrived",
            text=own,
            key=f"return:{app.id}:arrived",
            now=at,
            locale=person.locale,
        )
        batch = await session.scalar(select(ReturnBatch.name).where(ReturnBatch.id == app.batch_id))
        counsellors, _index = await step_approvers(session, self._rules, person, 0)
        name, number = mask_name(person.name), person.person_no
        for counsellor in counsellors:

            def theirs(_: Translate) -> str:
                return _(
                    "{name} ({person_no}) arrived back on campus at {gate} at {time} ({batch}).",
                    name=name,
                    person_no=number,
                    gate=gate,
                    time=when,
                    batch=batch or "",
                )

            await self._notifications.enqueue(
                session,
                person_id=counsellor.id,
                kind="return_arrived",
                text=theirs,
                key=f"return:{app.id}:arrived:{counsellor.id}",
                now=at,
                locale=counsellor.locale,
            )
            audit.record(session, f"person:{counsellor.id}", "notify", person.id, "arrival")
