"""Return applications: the form's checks, submit, change (before approval) and withdraw
(before arrival), and the services the chat and the scheduler use (`returns` by parameter name).

Submitting is one transaction: eligibility, one place of the day's quota (a conditional
UPDATE), the application, and either the auto-approval rule's decision or the first step's
pushes to its approvers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from bot.i18n import Translate
from campus import audit
from campus.notifications import Notifications
from campus.registry.fields import Invalid
from campus.returns import approvals
from campus.returns.approvals import Decision, PendingItem, Words, ref
from campus.returns.batches import BatchInfo, days_left, give_back, take_place
from campus.returns.config import ReturnRules
from campus.returns.eligibility import Eligibility, Problem, check
from storage.models import Person
from storage.models_returns import (
    ReturnApplication,
    ReturnApprover,
    ReturnBatch,
    ReturnDecision,
)

TRANSPORTS = ("train", "flight", "car", "other")
_TRAIN = re.compile(r"^[GDCZTKYSL]?\d{1,5}$")
_FLIGHT = re.compile(r"^[A-Z0-9]{2}\d{1,4}[A-Z]?$")
# Free text goes into tappable links and pushes: no markup, no line breaks.
_FORBIDDEN = re.compile(r'[<>"&#\x00-\x1f\x7f]')
MAX_REGION = 100
MAX_NUMBER = 32
MAX_REASON = 200


def check_transport(text: str) -> str:
    value = text.strip().casefold()
    if value not in TRANSPORTS:
        raise Invalid(f"unknown transport {text[:20]!r}")
    return value


def check_number(transport: str, text: str) -> str:
    value = " ".join(text.split())
    if transport in ("train", "flight"):
        value = value.replace(" ", "").upper()
        pattern = _TRAIN if transport == "train" else _FLIGHT
        if not pattern.match(value):
            raise Invalid(f"{value[:20]!r} is not a {transport} number")
        return value
    if not value or len(value) > MAX_NUMBER or _FORBIDDEN.search(value):
        raise Invalid(f"not 1–{MAX_NUMBER} plain characters")
    return value


def check_region(text: str) -> str:
    value = " ".join(text.split())
    if not value or len(value) > MAX_REGION or _FORBIDDEN.search(value):
        raise Invalid(f"not 1–{MAX_REGION} plain characters")
    return value


def check_reason(text: str) -> str:
    value = " ".join(text.split())
    if not value or len(value) > MAX_REASON or _FORBIDDEN.search(value):
        raise Invalid(f"not 1–{MAX_REASON} plain characters")
    return value


@dataclass(frozen=True, slots=True)
class Form:
    batch_code: str
    arrive_on: date
    transport: str
    transport_no: str
    region: str


class Outcome(Enum):
    SUBMITTED = "submitted"  # waiting for the first step
    AUTO_APPROVED = "auto_approved"
    CHANGED = "changed"
    WITHDRAWN = "withdrawn"
    INELIGIBLE = "ineligible"
    NO_BATCH = "no_batch"  # not a batch the student may apply to (any more)
    BAD_DATE = "bad_date"  # outside the window, or in the past
    FULL = "full"  # the day's quota is gone
    NOT_PENDING = "not_pending"  # nothing to change or withdraw (or decided already)


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    application_id: int | None = None
    eligibility: Eligibility | None = None


@dataclass(frozen=True, slots=True)
class ApplicationView:
    id: int
    state: str
    batch_code: str
    batch_name: str
    arrive_on: date
    transport: str
    transport_no: str
    region: str
    step: int
    steps: int
    step_name: str
    reason: str
    arrived_at: datetime | None

    @property
    def ref(self) -> str:
        return ref(self.id)


class ReturnService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifications: Notifications,
        rules: ReturnRules,
        clock: Clock,
        tz: ZoneInfo,
        words: Words,
    ) -> None:
        self._sessions = sessions
        self._notifications = notifications
        self.rules = rules
        self._clock = clock
        self.tz = tz
        self._words = words

    def now(self) -> datetime:
        return utcnow(self._clock)

    def today(self) -> date:
        return self.now().astimezone(self.tz).date()

    # -- the applicant ---------------------------------------------------------------------

    async def eligibility(self, person_id: int) -> Eligibility | None:
        async with self._sessions() as session:
            person = await session.get(Person, person_id)
            if person is None:
                return None
            return await check(session, person, self.today(), self.rules.min_checkin_days)

    async def batch(self, person_id: int, code: str) -> BatchInfo | None:
        """A batch this person may apply to, by code (any case)."""
        found = await self.eligibility(person_id)
        if found is None:
            return None
        wanted = code.strip().casefold()
        return next((b for b in found.batches if b.code.casefold() == wanted), None)

    async def days(self, batch: BatchInfo) -> list[tuple[date, int]]:
        """(day, places left) from today on, only days with a place left."""
        async with self._sessions() as session:
            return await days_left(session, batch, self.today())

    async def current(self, person_id: int) -> ApplicationView | None:
        """The open application, else the latest one."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ReturnApplication, ReturnBatch.code, ReturnBatch.name)
                    .join(ReturnBatch, ReturnBatch.id == ReturnApplication.batch_id)
                    .where(ReturnApplication.person_id == person_id)
                    .order_by(
                        ReturnApplication.live.desc().nulls_last(), ReturnApplication.id.desc()
                    )
                    .limit(1)
                )
            ).first()
        if row is None:
            return None
        app, code, name = row
        chain = self.rules.chain
        return ApplicationView(
            id=app.id,
            state=app.state,
            batch_code=code,
            batch_name=name,
            arrive_on=app.arrive_on,
            transport=app.transport,
            transport_no=app.transport_no,
            region=app.region,
            step=app.step,
            steps=len(chain),
            step_name=chain[min(app.step, len(chain) - 1)].name,
            reason=app.reason,
            arrived_at=app.arrived_at,
        )

    async def submit(self, person_id: int, form: Form) -> Result:
        try:
            return await self._submit(person_id, form)
        except IntegrityError:  # the same student submitting twice at once
            return Result(Outcome.NOT_PENDING)

    async def _submit(self, person_id: int, form: Form) -> Result:
        now, today = self.now(), self.today()
        async with self._sessions.begin() as session:
            person = await session.get(Person, person_id, with_for_update=True)
            if person is None:
                return Result(Outcome.INELIGIBLE)
            found = await check(session, person, today, self.rules.min_checkin_days)
            if not found.ok:
                return Result(Outcome.INELIGIBLE, eligibility=found)
            batch = next(
                (b for b in found.batches if b.code.casefold() == form.batch_code.casefold()),
                None,
            )
            if batch is None:
                return Result(Outcome.NO_BATCH, eligibility=found)
            if form.arrive_on not in batch.days_from(today):
                return Result(Outcome.BAD_DATE, eligibility=found)
            if not await take_place(session, batch, form.arrive_on):
                return Result(Outcome.FULL, eligibility=found)
            auto = self.rules.auto.admits(person.status, found.checkin_days, form.region)
            app = ReturnApplication(
                person_id=person.id,
                batch_id=batch.id,
                arrive_on=form.arrive_on,
                transport=form.transport,
                transport_no=form.transport_no,
                region=form.region,
                state="approved" if auto else "pending",
                live=1,
                checkin_days=found.checkin_days,
                step=0,
                step_since=now,
                submitted_at=now,
                updated_at=now,
                decided_at=now if auto else None,
                decided_by=approvals.AUTO if auto else "",
            )
            session.add(app)
            await session.flush()
            audit.record(session, f"person:{person.id}", "apply", person.id, "return")
            if auto:
                await self._auto(session, app, now)
                return Result(Outcome.AUTO_APPROVED, app.id)
            await approvals.ask(session, self._notifications, self.rules, self._words, app, now)
            await self._receipt(session, app, now, person.locale)
        return Result(Outcome.SUBMITTED, app.id)

    async def _auto(self, session: AsyncSession, app: ReturnApplication, now: datetime) -> None:
        session.add(
            ReturnDecision(
                application_id=app.id,
                step=app.step,
                approved=True,
                decided_by=approvals.AUTO,
                reason="",
                at=now,
            )
        )
        await approvals.tell_applicant(
            session,
            self._notifications,
            app,
            "return_decided",
            approvals.approved_text(app, self.rules.arrival_tolerance_days, auto=True),
            now,
            f"return:{app.id}:approved",
        )

    async def _receipt(
        self,
        session: AsyncSession,
        app: ReturnApplication,
        now: datetime,
        locale: str | None = None,
    ) -> None:
        first = self.rules.chain[0].name

        def text(_: Translate) -> str:
            return _(
                "Your return application {ref} was sent for approval ({step} first). "
                "We will tell you at each step.",
                ref=ref(app.id),
                step=approvals.step_label(first, _),
            )

        await approvals.tell_applicant(
            session,
            self._notifications,
            app,
            "return_progress",
            text,
            now,
            f"return:{app.id}:submitted:{now.timestamp():.0f}",
            locale,
        )

    async def change(self, person_id: int, form: Form) -> Result:
        """Replace the pending application's details; its approval starts again."""
        now, today = self.now(), self.today()
        async with self._sessions.begin() as session:
            app = await session.scalar(
                select(ReturnApplication)
                .where(ReturnApplication.person_id == person_id, ReturnApplication.live == 1)
                .with_for_update()
            )
            if app is None or app.state != "pending":
                return Result(Outcome.NOT_PENDING)
            person = await session.get(Person, person_id)
            assert person is not None
            found = await check(session, person, today, self.rules.min_checkin_days)
            # The open application itself is not a problem here.
            problems = [p for p in found.problems if p is not Problem.OPEN_APPLICATION]
            if problems:
                return Result(Outcome.INELIGIBLE, app.id, found)
            batch = next(
                (b for b in found.batches if b.code.casefold() == form.batch_code.casefold()),
                None,
            )
            if batch is None:
                return Result(Outcome.NO_BATCH, app.id, found)
            if form.arrive_on not in batch.days_from(today):
                return Result(Outcome.BAD_DATE, app.id, found)
            if (batch.id, form.arrive_on) != (app.batch_id, app.arrive_on):
                if not await take_place(session, batch, form.arrive_on):
                    return Result(Outcome.FULL, app.id, found)
                await give_back(session, app.batch_id, app.arrive_on)
            app.batch_id, app.arrive_on = batch.id, form.arrive_on
            app.transport, app.transport_no, app.region = (
                form.transport,
                form.transport_no,
                form.region,
            )
            app.checkin_days = found.checkin_days
            app.step, app.step_since, app.reminded_at, app.escalations = 0, now, None, 0
            app.updated_at = now
            # The chain starts again: those asked before are asked afresh.
            await session.execute(
                delete(ReturnApprover).where(ReturnApprover.application_id == app.id)
            )
            await session.flush()
            audit.record(session, f"person:{person_id}", "update", person_id, "return")
            await approvals.ask(session, self._notifications, self.rules, self._words, app, now)
            await self._receipt(session, app, now)
        return Result(Outcome.CHANGED, app.id)

    async def withdraw(self, person_id: int) -> Result:
        now = self.now()
        async with self._sessions.begin() as session:
            app = await session.scalar(
                select(ReturnApplication)
                .where(ReturnApplication.person_id == person_id, ReturnApplication.live == 1)
                .with_for_update()
            )
            # Before arrival: a student approved who cannot come frees the place too.
            if app is None or app.state not in ("pending", "approved"):
                return Result(Outcome.NOT_PENDING)
            app.state, app.live, app.updated_at = "withdrawn", None, now
            await give_back(session, app.batch_id, app.arrive_on)
            audit.record(session, f"person:{person_id}", "withdraw", person_id, "return")
        return Result(Outcome.WITHDRAWN, app.id)

    # -- the approvers ---------------------------------------------------------------------

    async def decide(
        self, decider_id: int, application_id: int, approve: bool, reason: str = ""
    ) -> Decision:
        async with self._sessions.begin() as session:
            return await approvals.decide(
                session,
                self._notifications,
                self.rules,
                self._words,
                decider_id=decider_id,
                application_id=application_id,
                approve=approve,
                reason=reason,
                now=self.now(),
            )

    async def waits_for(self, person_id: int, application_id: int) -> Decision | None:
        """None when the application waits for this person's decision; else why not."""
        async with self._sessions() as session:
            return await approvals.waits_for(session, person_id, application_id)

    async def pending(self, person_id: int) -> tuple[list[PendingItem], int]:
        async with self._sessions() as session:
            return await approvals.pending_for(session, self.rules, person_id)

    async def remind_and_escalate(self, now: datetime | None = None) -> tuple[int, int]:
        async with self._sessions.begin() as session:
            return await approvals.remind_and_escalate(
                session, self._notifications, self.rules, self._words, now or self.now()
            )

    async def auto_approve(self, now: datetime | None = None) -> int:
        async with self._sessions.begin() as session:
            return await approvals.auto_approve_pending(
                session, self._notifications, self.rules, now or self.now()
            )
