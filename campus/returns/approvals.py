"""The approval chain: who is asked at each step, their decisions, reminders and escalation,
and the auto-approval rule.

Each step goes to the responsible persons of a unit above the applicant's (rules file
`returns.approval_chain`; a unit without any passes the step one unit up). Anyone it went to
may decide it; unanswered for `remind_after_hours` they are reminded, and after
`escalate_after_hours` more it goes one unit further up, at most `max_escalations` times.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.i18n import N_, Translate, translator
from bot.replies import options
from campus import audit
from campus.identity import mask_name
from campus.notifications import Notifications, Push
from campus.returns.batches import ancestors, give_back
from campus.returns.config import ReturnRules
from storage.models import Person, Unit, UnitResponsible
from storage.models_returns import (
    ReturnApplication,
    ReturnApprover,
    ReturnBatch,
    ReturnDecision,
)

log = logging.getLogger(__name__)

AUTO = "rule:auto"
MAX_PENDING_SHOWN = 10

TRANSPORT_NAMES = {
    "train": N_("train"),
    "flight": N_("flight"),
    "car": N_("car"),
    "other": N_("other transport"),
}
STATUS_NAMES = {"green": N_("Green"), "yellow": N_("Yellow"), "red": N_("Red")}
# The shipped chain's step names; a rules file may name its steps otherwise (shown as written).
STEP_NAMES = {"class": N_("class"), "college": N_("college"), "school": N_("school")}


def step_label(name: str, _: Translate) -> str:
    return _(STEP_NAMES[name]) if name in STEP_NAMES else name


def ref(application_id: int) -> str:
    """How an application is shown and typed: `A12` (registrations are plain numbers)."""
    return f"A{application_id}"


def parse_ref(text: str, *, bare_digits: bool) -> int | None:
    """12 from `A12`/`a12` (or `12` when `bare_digits`); None for anything else."""
    value = text.strip()
    if value[:1] in ("A", "a"):
        value = value[1:]
    elif not bare_digits:
        return None
    if not value.isdigit() or len(value) > 12:
        return None
    return int(value)


@dataclass(frozen=True, slots=True)
class Words:
    """The chat words approvers tap (handlers/keywords.py owns them), by locale."""

    approve: Callable[[str], str]
    reject: Callable[[str], str]


class Decision(Enum):
    APPROVED = "approved"  # the last step: the application is approved
    PASSED_ON = "passed_on"  # this step approved; the next step is asked
    REJECTED = "rejected"
    NOT_PENDING = "not_pending"
    NOT_ALLOWED = "not_allowed"


@dataclass(frozen=True, slots=True)
class PendingItem:
    id: int
    masked_name: str
    person_no: str
    batch: str
    arrive_on: date
    step_name: str


@dataclass(frozen=True, slots=True)
class Facts:
    """What an approver's push says about an application (the name masked)."""

    application_id: int
    masked_name: str
    person_no: str
    unit: str
    batch: str
    arrive_on: date
    transport: str
    transport_no: str
    region: str
    checkin_days: int
    status: str
    step: int
    steps: int
    step_name: str

    def text(self, _: Translate, approve: str, reject: str) -> str:
        return (
            _(
                "Return application {ref} waits for you (step {step} of {steps}, {step_name}): "
                "{name} ({person_no}, {unit}), {batch}, arriving {date} by {transport} "
                "{number} from {region}; {days} days of check-ins in a row, {colour}.",
                ref=ref(self.application_id),
                step=self.step + 1,
                steps=self.steps,
                step_name=step_label(self.step_name, _),
                name=self.masked_name,
                person_no=self.person_no,
                unit=self.unit,
                batch=self.batch,
                date=str(self.arrive_on),
                transport=_(TRANSPORT_NAMES.get(self.transport, self.transport)),
                number=self.transport_no,
                region=self.region,
                days=self.checkin_days,
                colour=_(STATUS_NAMES.get(self.status, self.status)),
            )
            + "\n"
            + options(
                [
                    (_("Approve"), f"{approve} {ref(self.application_id)}"),
                    (_("Reject"), f"{reject} {ref(self.application_id)}"),
                ]
            )
        )


async def _responsibles(session: AsyncSession, unit_id: int, applicant_id: int) -> list[Person]:
    nos = select(UnitResponsible.person_no).where(UnitResponsible.unit_id == unit_id)
    return list(
        (
            await session.execute(
                select(Person)
                .where(
                    Person.person_no.in_(nos),
                    Person.state == "active",
                    Person.id != applicant_id,
                )
                .order_by(Person.id)
            )
        ).scalars()
    )


async def step_approvers(
    session: AsyncSession, rules: ReturnRules, person: Person, step: int, extra_up: int = 0
) -> tuple[list[Person], int]:
    """The persons a step goes to (and how many units up they are), walking up past units
    without any; ([], -1) when no unit up the tree has one."""
    chain = await ancestors(session, person.unit_id)
    start = min(rules.chain[step].up, len(chain) - 1)
    found = -1
    for index in range(start, len(chain)):
        if await _responsibles(session, chain[index], person.id):
            found = index
            break
    if found < 0:
        return [], -1
    index = found + extra_up
    while index < len(chain):
        people = await _responsibles(session, chain[index], person.id)
        if people:
            return people, index
        index += 1
    return [], -1


async def _facts(session: AsyncSession, rules: ReturnRules, app: ReturnApplication) -> Facts:
    person = await session.get(Person, app.person_id)
    assert person is not None
    unit = await session.scalar(select(Unit.name).where(Unit.id == person.unit_id))
    batch = await session.scalar(select(ReturnBatch.name).where(ReturnBatch.id == app.batch_id))
    return Facts(
        application_id=app.id,
        masked_name=mask_name(person.name),
        person_no=person.person_no,
        unit=unit or "",
        batch=batch or "",
        arrive_on=app.arrive_on,
        transport=app.transport,
        transport_no=app.transport_no,
        region=app.region,
        checkin_days=app.checkin_days,
        status=person.status,
        step=app.step,
        steps=len(rules.chain),
        step_name=rules.chain[app.step].name,
    )


async def ask(
    session: AsyncSession,
    notifications: Notifications,
    rules: ReturnRules,
    words: Words,
    app: ReturnApplication,
    now: datetime,
    *,
    level: int = 0,
) -> int:
    """Send the current step to its approvers (or, at `level` > 0, that many units further
    up); records them as approvers. Returns how many were asked."""
    person = await session.get(Person, app.person_id)
    assert person is not None
    people, _index = await step_approvers(session, rules, person, app.step, level)
    if not people:
        log.warning("return application %s: nobody to ask at step %s", app.id, app.step)
        return 0
    facts = await _facts(session, rules, app)
    round_ = secrets.token_hex(4)  # each asking is its own push (a changed application asks again)
    known = set(
        (
            await session.execute(
                select(ReturnApprover.person_id).where(
                    ReturnApprover.application_id == app.id, ReturnApprover.step == app.step
                )
            )
        ).scalars()
    )
    asked = 0
    for approver in people:
        if approver.id in known:
            continue
        session.add(
            ReturnApprover(
                application_id=app.id,
                step=app.step,
                person_id=approver.id,
                level=level,
                notified_at=now,
            )
        )
        locale = approver.locale

        def text(_: Translate, locale: str = locale) -> str:
            prefix = _("Escalated to you: ") if level else ""
            return prefix + facts.text(_, words.approve(locale), words.reject(locale))

        await notifications.enqueue(
            session,
            person_id=approver.id,
            kind="return_approval",
            text=text,
            key=f"return:{app.id}:{app.step}:{level}:{approver.id}:{round_}",
            now=now,
            locale=locale,
        )
        audit.record(session, f"person:{approver.id}", "notify", app.person_id, "return approval")
        asked += 1
    return asked


async def tell_applicant(
    session: AsyncSession,
    notifications: Notifications,
    app: ReturnApplication,
    kind: str,
    text: Callable[[Translate], str],
    now: datetime,
    key: str,
    locale: str | None = None,
) -> None:
    await notifications.enqueue(
        session, person_id=app.person_id, kind=kind, text=text, key=key, now=now, locale=locale
    )


def approved_text(
    app: ReturnApplication, tolerance: int, *, auto: bool
) -> Callable[[Translate], str]:
    day = str(app.arrive_on)

    def text(_: Translate) -> str:
        head = (
            _(
                "Your return application {ref} was approved automatically by the campus rules.",
                ref=ref(app.id),
            )
            if auto
            else _("Your return application {ref} was approved.", ref=ref(app.id))
        )
        return (
            head
            + " "
            + _(
                "Arrive on {date} (up to {days} day(s) earlier or later) and show your pass code "
                "to the guard at the gate; your arrival is recorded there.",
                date=day,
                days=tolerance,
            )
        )

    return text


async def decide(
    session: AsyncSession,
    notifications: Notifications,
    rules: ReturnRules,
    words: Words,
    *,
    decider_id: int,
    application_id: int,
    approve: bool,
    reason: str,
    now: datetime,
) -> Decision:
    app = await session.get(ReturnApplication, application_id, with_for_update=True)
    if app is None or app.state != "pending":
        return Decision.NOT_PENDING
    allowed = await session.scalar(
        select(ReturnApprover.person_id).where(
            ReturnApprover.application_id == app.id,
            ReturnApprover.step == app.step,
            ReturnApprover.person_id == decider_id,
        )
    )
    if allowed is None:
        # Asked at an earlier step, or not at all.
        return Decision.NOT_ALLOWED
    who = f"person:{decider_id}"
    session.add(
        ReturnDecision(
            application_id=app.id,
            step=app.step,
            approved=approve,
            decided_by=who,
            reason=reason,
            at=now,
        )
    )
    audit.record(session, who, "approve" if approve else "reject", app.person_id, "return")
    step_name = rules.chain[app.step].name
    app.updated_at = now
    if not approve:
        app.state, app.live, app.reason = "rejected", None, reason
        app.decided_at, app.decided_by = now, who
        await give_back(session, app.batch_id, app.arrive_on)

        def rejected(_: Translate) -> str:
            return _(
                "Your return application {ref} was not approved ({step}): {reason}. "
                "You may apply again once the reason is resolved.",
                ref=ref(app.id),
                step=step_label(step_name, _),
                reason=reason,
            )

        await tell_applicant(
            session,
            notifications,
            app,
            "return_decided",
            rejected,
            now,
            f"return:{app.id}:rejected",
        )
        return Decision.REJECTED
    if app.step + 1 < len(rules.chain):
        app.step += 1
        app.step_since, app.reminded_at, app.escalations = now, None, 0
        next_name = rules.chain[app.step].name
        await session.flush()
        await ask(session, notifications, rules, words, app, now)

        def passed(_: Translate) -> str:
            return _(
                "Your return application {ref} was approved at step {step} ({name}); it now "
                "waits for {next}.",
                ref=ref(app.id),
                step=app.step,
                name=step_label(step_name, _),
                next=step_label(next_name, _),
            )

        await tell_applicant(
            session,
            notifications,
            app,
            "return_progress",
            passed,
            now,
            f"return:{app.id}:step:{app.step}:{now.timestamp():.0f}",
        )
        return Decision.PASSED_ON
    app.state, app.decided_at, app.decided_by = "approved", now, who
    await tell_applicant(
        session,
        notifications,
        app,
        "return_decided",
        approved_text(app, rules.arrival_tolerance_days, auto=False),
        now,
        f"return:{app.id}:approved",
    )
    return Decision.APPROVED


async def waits_for(session: AsyncSession, person_id: int, application_id: int) -> Decision | None:
    """None when the application waits for this person's decision now; else why not."""
    app = await session.get(ReturnApplication, application_id)
    if app is None or app.state != "pending":
        return Decision.NOT_PENDING
    asked = await session.scalar(
        select(ReturnApprover.person_id).where(
            ReturnApprover.application_id == app.id,
            ReturnApprover.step == app.step,
            ReturnApprover.person_id == person_id,
        )
    )
    return None if asked is not None else Decision.NOT_ALLOWED


async def pending_for(
    session: AsyncSession, rules: ReturnRules, person_id: int
) -> tuple[list[PendingItem], int]:
    """What waits for this person (the oldest first, at most 10) and how many in all."""
    waiting = (
        select(ReturnApplication.id)
        .join(
            ReturnApprover,
            (ReturnApprover.application_id == ReturnApplication.id)
            & (ReturnApprover.step == ReturnApplication.step),
        )
        .where(ReturnApprover.person_id == person_id, ReturnApplication.state == "pending")
    )
    total = await session.scalar(select(func.count()).select_from(waiting.subquery()))
    rows = await session.execute(
        select(
            ReturnApplication.id,
            Person.name,
            Person.person_no,
            ReturnBatch.name,
            ReturnApplication.arrive_on,
            ReturnApplication.step,
        )
        .join(Person, Person.id == ReturnApplication.person_id)
        .join(ReturnBatch, ReturnBatch.id == ReturnApplication.batch_id)
        .where(ReturnApplication.id.in_(waiting))
        .order_by(ReturnApplication.step_since, ReturnApplication.id)
        .limit(MAX_PENDING_SHOWN)
    )
    items = [
        PendingItem(
            app_id,
            mask_name(name),
            no,
            batch,
            day,
            rules.chain[min(step, len(rules.chain) - 1)].name,
        )
        for app_id, name, no, batch, day, step in rows
    ]
    return items, int(total or 0)


async def remind_and_escalate(
    session: AsyncSession,
    notifications: Notifications,
    rules: ReturnRules,
    words: Words,
    now: datetime,
) -> tuple[int, int]:
    """Remind the approvers of steps unanswered for `remind_after_hours`; pass steps still
    unanswered `escalate_after_hours` later one unit up. Returns (reminded, escalated)."""
    remind_before = now - timedelta(hours=rules.remind_after_hours)
    escalate_before = now - timedelta(hours=rules.escalate_after_hours)
    reminded = escalated = 0
    due = list(
        (
            await session.execute(
                select(ReturnApplication)
                .where(
                    ReturnApplication.state == "pending",
                    ReturnApplication.reminded_at.is_(None),
                    ReturnApplication.step_since <= remind_before,
                )
                .order_by(ReturnApplication.id)
                .limit(1000)
            )
        ).scalars()
    )
    for app in due:
        facts = await _facts(session, rules, app)
        approvers = (
            await session.execute(
                select(Person.id, Person.locale)
                .join(ReturnApprover, ReturnApprover.person_id == Person.id)
                .where(ReturnApprover.application_id == app.id, ReturnApprover.step == app.step)
            )
        ).all()
        for approver_id, locale in approvers:
            _ = translator(locale)
            await notifications.enqueue(
                session,
                person_id=approver_id,
                kind="return_reminder",
                text=_("Reminder: ") + facts.text(_, words.approve(locale), words.reject(locale)),
                key=f"return:{app.id}:{app.step}:{app.step_since.timestamp():.0f}:remind:{approver_id}",
                now=now,
            )
        app.reminded_at = now
        reminded += 1
    if rules.max_escalations:
        late = list(
            (
                await session.execute(
                    select(ReturnApplication)
                    .where(
                        ReturnApplication.state == "pending",
                        ReturnApplication.reminded_at <= escalate_before,
                        ReturnApplication.escalations < rules.max_escalations,
                    )
                    .order_by(ReturnApplication.id)
                    .limit(1000)
                )
            ).scalars()
        )
        for app in late:
            app.escalations += 1
            app.reminded_at = now  # the next escalation comes another interval later
            if await ask(session, notifications, rules, words, app, now, level=app.escalations):
                escalated += 1
    return reminded, escalated


_DECISIONS = cast(Table, ReturnDecision.__table__)


async def _fresh_statistics(session: AsyncSession) -> None:
    """PostgreSQL: statistics for the join below. Applications arrive in bursts, and with the
    planner still believing the table small it nested-loops over every pending application
    once per person (measured: 108 s instead of 1 s for 39,362; bench/README.md)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    try:
        async with session.begin_nested():
            await session.execute(text("ANALYZE return_applications, persons"))
    except DBAPIError:
        log.warning("could not ANALYZE for auto-approval; it may be slow until autovacuum does")


async def auto_approve_pending(
    session: AsyncSession, notifications: Notifications, rules: ReturnRules, now: datetime
) -> int:
    """Approve every pending application the auto-approval rule admits, recorded as the
    rule's decision; a few set-based statements whatever their number."""
    auto = rules.auto
    if not auto.enabled:
        return 0
    where = [
        ReturnApplication.state == "pending",
        ReturnApplication.checkin_days >= auto.min_checkin_days,
        Person.status.in_(sorted(auto.statuses)),
    ]
    for region in auto.risk_regions:
        where.append(func.lower(ReturnApplication.region).not_like(f"%{region.casefold()}%"))
    await _fresh_statistics(session)
    rows = (
        await session.execute(
            select(
                ReturnApplication.id,
                ReturnApplication.person_id,
                ReturnApplication.step,
                ReturnApplication.arrive_on,
                Person.locale,
            )
            .join(Person, Person.id == ReturnApplication.person_id)
            .where(*where)
            .with_for_update(of=ReturnApplication)
        )
    ).all()
    if not rows:
        return 0
    ids = [r[0] for r in rows]
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        await session.execute(
            update(ReturnApplication)
            .where(ReturnApplication.id.in_(chunk), ReturnApplication.state == "pending")
            .values(state="approved", decided_at=now, decided_by=AUTO, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    await session.execute(
        insert(_DECISIONS),
        [
            {
                "application_id": app_id,
                "step": step,
                "approved": True,
                "decided_by": AUTO,
                "reason": "",
                "at": now,
            }
            for app_id, _person, step, _day, _locale in rows
        ],
    )
    translators = {loc: translator(loc) for loc in {r[4] for r in rows}}
    pushes = []
    for app_id, person_id, _step, day, locale in rows:
        stub = ReturnApplication(id=app_id, arrive_on=day)
        text = approved_text(stub, rules.arrival_tolerance_days, auto=True)(translators[locale])
        pushes.append(Push(person_id, "return_decided", text, f"return:{app_id}:approved"))
    await notifications.enqueue_many(session, pushes, now=now)
    audit.record(session, AUTO, "approve", None, f"return: {len(rows)} auto-approved")
    return len(rows)
