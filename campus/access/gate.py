"""Guard scans and self check-ins: verify, decide by the place's policy, write the record.

The guard's scan is the hot path: the code is checked in memory (keys and places are
cached), then one read fetches the person's live facts, and the decision is replied at once:
its access record is written behind (storage/behind.py), in the background, batched with the
others. Scans that arrive together share the read (storage/batching.py): one read of the
persons, one `WHERE id IN (…)`, on the driver's connection (storage/raw.py).

A batch that moves an occupancy count, or has the gate hook to ask about a person not back
yet, is decided and recorded in one transaction through SQLAlchemy, and replied once it is
committed: there the decision depends on what the transaction writes (the count, the
arrival), and the hook works with mapped objects.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    ColumnExpressionArgument,
    Select,
    Table,
    bindparam,
    case,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.clock import Clock
from bot.metrics import ACCESS_DECISIONS
from campus.access.duty import IN, OUT
from campus.access.passes import PassService
from campus.access.places import PlaceDirectory, PlaceInfo
from campus.access.policies import Policies, Policy, Reason, Subject
from campus.access.token import Problem, TokenRejected
from campus.identity import mask_name
from storage import raw
from storage.batching import Batcher, Failed, bound_list, one_of
from storage.behind import Backlogged, RowsBehind
from storage.models import AccessRecord, Person, PlaceOccupancy, Unit

log = logging.getLogger(__name__)

GUARD, SELF = "guard", "self"


@dataclass(frozen=True, slots=True)
class Identity:
    """All a guard is shown of a person: never the status or the health report."""

    masked_name: str
    category: str
    unit: str


@dataclass(frozen=True, slots=True)
class GateNote:
    """What the return feature says of a guard-scanned entry at a gate (campus/returns/arrival.py).

    `arrived`: the arrival was recorded now. Otherwise the entry is refused (NOT_RETURNED) and
    `problem` says why: pending (not approved yet), too_early, too_late (`day`: the approved day).
    """

    arrived: bool
    problem: str = ""
    day: date | None = None


class GateHook(Protocol):
    """Asked, inside the scan's transaction, about a guard-scanned entry at a gate by a person
    not back on campus yet; None leaves the decision to the place's policy.

    Only for the persons its `concerns` column marks: the batch's one read of the persons
    carries it, so a scan of anyone else costs the hook nothing."""

    def concerns(self, person_id: ColumnExpressionArgument[int]) -> ColumnElement[bool]:
        """A column, correlated to `person_id` (`Person.id` of the batch's read): true for a
        person the hook may have something to say about; it is asked about no one else."""
        ...

    async def __call__(
        self, session: AsyncSession, person_id: int, place: PlaceInfo, at: datetime
    ) -> GateNote | None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    direction: str
    place: PlaceInfo
    at: datetime
    reason: Reason | None = None
    identity: Identity | None = None  # None when the code did not verify
    status: str = ""  # the live status, for the person's own reply only (self check-in)
    policy: Policy | None = None
    note: GateNote | None = None  # what the gate hook said (a return to campus)


@dataclass(frozen=True, slots=True)
class _Person:
    subject: Subject
    identity: Identity
    hooked: bool  # the gate hook's `concerns` column (False without a hook)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One scan or check-in waiting for its batch: who (if known), where, when, how."""

    person_id: int | None
    place: PlaceInfo
    direction: str
    at: datetime
    method: str
    verifier: int | None
    refused: Reason | None = None  # decided before the database (a code that did not verify)


_RECORDS = cast(Table, AccessRecord.__table__)  # Core: an executemany, no ORM bookkeeping
# The batch's statements, built once and run on a Core connection: no ORM compile step per
# execution, and SQLAlchemy's compiled cache serves them at once.
_INSERT_RECORDS = insert(_RECORDS)
_RECORD_COLUMNS = (
    "person_id",
    "place_id",
    "direction",
    "at",
    "allowed",
    "reason",
    "method",
    "verifier_id",
)
_PersonsRead = Select[*tuple[Any, ...]]


_Settled = tuple[list["Decision"], list[dict[str, Any]]]  # the decisions, their records
ROOM_TIMEOUT = 3.0  # seconds a batch may wait for the records' writer to catch up


@dataclass(frozen=True, slots=True)
class _RawStatements:
    """The batch's statements for storage/raw.py: the persons' read, for one and for many."""

    one: raw.Statement
    many: raw.Statement


@functools.cache
def _decisions(method: str, direction: str, reason: str) -> Any:
    """The decisions counter's child for these labels (`labels` takes a lock and builds a
    key on every call; the combinations are a few dozen)."""
    return ACCESS_DECISIONS.labels(method, direction, reason)


def _persons_read(hooked: ColumnElement[bool], dialect: str) -> tuple[_PersonsRead, _PersonsRead]:
    """The batch's persons: `WHERE id = :id` for one (a lone scan, as at a gate most of the
    day), else the list bound as one parameter (storage/batching.py's `one_of`: compiled
    once, where an expanding IN is rendered again on every execution)."""
    read = select(
        Person.id,
        Person.name,
        Person.category,
        Person.state,
        Person.status,
        Person.valid_until,
        Person.home_place_id,
        Person.returned_at,
        Unit.name.label("unit"),
        hooked.label("hooked"),
    ).join(Unit, Unit.id == Person.unit_id)
    return (
        read.where(Person.id == bindparam("id")),
        read.where(one_of(Person.id, "ids", dialect)),
    )


class AccessService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        passes: PassService,
        policies: Policies,
        places: PlaceDirectory,
        clock: Clock,
        tz: ZoneInfo,
    ) -> None:
        self._sessions = sessions
        engine = sessions.kw.get("bind")
        if not isinstance(engine, AsyncEngine):
            raise TypeError("the access service needs sessions bound to an engine")
        self._engine = engine
        self._dialect = engine.dialect.name
        self._passes = passes
        self.policies = policies
        self.places = places
        self._clock = clock
        self._tz = tz
        self._batches: Batcher[_Attempt, Decision] = Batcher(self._settle, name="access")
        self._records = RowsBehind(engine, _RECORDS, _RECORD_COLUMNS, name="access_records")
        self._gate_hook: GateHook | None = None
        self._raw_reads: _RawStatements | None = None
        self._set_reads(false())

    @property
    def gate_hook(self) -> GateHook | None:
        """Arrival at a gate (the return feature); set by bot/services.py."""
        return self._gate_hook

    @gate_hook.setter
    def gate_hook(self, hook: GateHook | None) -> None:
        self._gate_hook = hook
        self._set_reads(false() if hook is None else hook.concerns(Person.id))

    def _set_reads(self, hooked: ColumnElement[bool]) -> None:
        self._read_persons = _persons_read(hooked, self._dialect)
        if raw.supported(self._engine):
            dialect = self._engine.dialect
            one, many = self._read_persons
            self._raw_reads = _RawStatements(
                raw.Statement(one, dialect),
                raw.Statement(many, dialect),
            )

    async def flushed(self) -> None:
        """Wait until the access records of every decision made so far are committed."""
        await self._records.flushed()

    async def close(self) -> None:
        """Commit the access records still queued (at shutdown, before the engine closes)."""
        await self._records.close()

    async def scan(
        self,
        token: str,
        place: PlaceInfo,
        guard_id: int,
        direction: str,
        known: Mapping[str, bytes | None] | None = None,
    ) -> Decision:
        """A guard on duty at `place` scanned `token`; `known`: store entries read with the
        message, which may hold the code's issue record (PassService.verify)."""
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        try:
            claims = await self._passes.verify(token, known)
        except TokenRejected as exc:
            reason = Reason.EXPIRED_CODE if exc.problem is Problem.EXPIRED else Reason.INVALID_CODE
            attempt = _Attempt(None, place, direction, now, GUARD, guard_id, reason)
            return await self._batches.submit(attempt)
        attempt = _Attempt(claims.person_id, place, direction, now, GUARD, guard_id)
        return await self._batches.submit(attempt)

    async def check_in(self, person_id: int, place: PlaceInfo, direction: str) -> Decision:
        """A person scanned `place`'s poster with their own phone."""
        now = datetime.fromtimestamp(self._clock.time(), UTC)
        return await self._batches.submit(_Attempt(person_id, place, direction, now, SELF, None))

    async def _settle(self, attempts: Sequence[_Attempt]) -> list[Decision | Failed]:
        """Decide and record a batch: one read of the persons; the records written behind,
        or, where a decision depends on a write, in one transaction with it."""
        settled: _Settled | None = None
        persons: dict[int, _Person] | None = None
        if self._raw_reads is not None and not any(self._counted(a) for a in attempts):
            try:
                persons, settled = await self._settle_raw(self._raw_reads, attempts)
            except Backlogged as exc:
                # The batch's own failure, not one of its scans': trying them one by one
                # would wait for the writer once a scan.
                return [Failed(exc)] * len(attempts)
        if settled is None:
            settled = await self._settle_core(attempts, persons)
        decisions, rows = settled
        for row in rows:
            _decisions(row["method"], row["direction"], row["reason"]).inc()
        return [*decisions]

    def _counted(self, attempt: _Attempt) -> bool:
        """Whether the attempt may move an occupancy count (its place has a capacity)."""
        policy = self.policies.get(attempt.place.policy)
        return policy is not None and policy.capacity is not None

    async def _settle_raw(
        self, statements: _RawStatements, attempts: Sequence[_Attempt]
    ) -> tuple[dict[int, _Person], _Settled | None]:
        """The batch on the driver's connection: the persons read, the decisions made and
        their records queued to be written behind. Not settled, with nothing queued, when
        the gate hook has a person to be asked about or a decision's policy counts occupancy:
        then `_settle_core` takes the batch, with the persons already read."""
        async with raw.transaction(self._engine, reads=True) as tx:
            ids = _ids(attempts)
            persons: dict[int, _Person] = {}
            if len(ids) == 1:
                found = await tx.fetch(statements.one, {"id": next(iter(ids))})
                persons = _persons(found)
            elif ids:
                found = await tx.fetch(statements.many, {"ids": bound_list(ids, self._dialect)})
                persons = _persons(found)
        decisions = [self._decide(attempt, persons) for attempt in attempts]
        if any(
            self._asks_hook(a, persons, d)
            or (d.policy is not None and d.policy.capacity is not None)  # rules reloaded
            for a, d in zip(attempts, decisions, strict=True)
        ):
            return persons, None
        rows = [_record(a, d) for a, d in zip(attempts, decisions, strict=True)]
        if self._records.full(len(rows)):
            # The writer is behind (a stalled disk, a database that is down): wait for it,
            # then fail the scans, rather than hold records in memory without bound.
            await self._records.room(len(rows), ROOM_TIMEOUT)
        self._records.put(rows)
        return persons, (decisions, rows)

    async def _settle_core(
        self, attempts: Sequence[_Attempt], persons: dict[int, _Person] | None = None
    ) -> _Settled:
        """The batch through SQLAlchemy, for what `_settle_raw` leaves: occupancy counts and
        the gate hook. The transaction is a Core connection's; an ORM session joins it only
        when the hook is asked (it works with mapped objects). `persons`: read already."""
        decisions: list[Decision] = []
        rows: list[dict[str, Any]] = []
        async with self._engine.begin() as conn:
            tx = _Transaction(conn, self._sessions)
            try:
                ids = _ids(attempts)
                if persons is None:
                    persons = await _load_persons(conn, self._read_persons, ids) if ids else {}
                for attempt in attempts:
                    decision = self._decide(attempt, persons)
                    decision = await self._at_gate(tx, attempt, persons, decision)
                    decision = await self._count(conn, decision)
                    decisions.append(decision)
                    rows.append(_record(attempt, decision))
                await tx.flush()
                await conn.execute(_INSERT_RECORDS, rows)
            finally:
                await tx.close()
        return decisions, rows

    def _decide(self, attempt: _Attempt, persons: dict[int, _Person]) -> Decision:
        place, direction, at = attempt.place, attempt.direction, attempt.at
        if attempt.refused is not None:
            return Decision(False, direction, place, at, attempt.refused)
        person = persons.get(attempt.person_id) if attempt.person_id is not None else None
        if person is None:
            return Decision(False, direction, place, at, Reason.UNKNOWN_PERSON)
        policy = self.policies.get(place.policy)
        reason: Reason | None = None
        if direction == IN:  # leaving is always allowed: a policy decides entries
            if policy is None:
                log.warning("place %s names unknown policy %r", place.code, place.policy)
                reason = Reason.NO_POLICY
            else:
                reason = policy.decide(
                    person.subject, place.id, at.astimezone(self._tz), self.places.within
                )
        return Decision(
            reason is None,
            direction,
            place,
            at,
            reason,
            person.identity,
            person.subject.status,
            policy,
        )

    async def _at_gate(
        self,
        tx: _Transaction,
        attempt: _Attempt,
        persons: dict[int, _Person],
        decision: Decision,
    ) -> Decision:
        """A guard's entry scan at a gate of a person not back yet: ask the gate hook."""
        if self.gate_hook is None or not self._asks_hook(attempt, persons, decision):
            return decision
        assert attempt.person_id is not None  # _asks_hook
        note = await self.gate_hook(tx.session(), attempt.person_id, attempt.place, attempt.at)
        if note is None:
            return decision
        if note.arrived:
            return replace(decision, note=note)
        return replace(decision, allowed=False, reason=Reason.NOT_RETURNED, note=note)

    def _asks_hook(
        self, attempt: _Attempt, persons: dict[int, _Person], decision: Decision
    ) -> bool:
        """Whether the gate hook is asked about this attempt: a guard's allowed entry scan at
        a gate, of a person not back yet whom the hook's `concerns` column marks."""
        if (
            self.gate_hook is None
            or not decision.allowed
            or attempt.method != GUARD
            or attempt.direction != IN
            or attempt.place.kind != "gate"
            or attempt.person_id is None
        ):
            return False
        person = persons.get(attempt.person_id)
        return person is not None and person.subject.returned_at is None and person.hooked

    async def _count(self, conn: AsyncConnection, decision: Decision) -> Decision:
        """Move the occupancy of a place with a capacity; a full place turns a pass to ⛔."""
        policy = decision.policy
        if policy is None or policy.capacity is None or not decision.allowed:
            return decision
        today = decision.at.astimezone(self._tz).date()
        if decision.direction != IN:
            await _leave(conn, decision.place.id, today)
            return decision
        if await _enter(conn, decision.place.id, policy.capacity, today):
            return decision
        return replace(decision, allowed=False, reason=Reason.FULL)


class _Transaction:
    """A batch's transaction: its Core connection, and an ORM session joined to it, made the
    first time the gate hook is asked. The session never commits the connection's
    transaction (SQLAlchemy's "rollback_only" join: the batch commits it, or rolls it back)."""

    def __init__(self, conn: AsyncConnection, sessions: async_sessionmaker[AsyncSession]):
        self._conn = conn
        self._sessions = sessions
        self._session: AsyncSession | None = None

    def session(self) -> AsyncSession:
        if self._session is None:
            self._session = self._sessions(bind=self._conn, join_transaction_mode="rollback_only")
        return self._session

    async def flush(self) -> None:
        """Write what the session holds (before the batch's own insert, as autoflush did)."""
        if self._session is not None:
            await self._session.flush()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _ids(attempts: Sequence[_Attempt]) -> set[int]:
    """The persons a batch reads: those whose code verified."""
    return {a.person_id for a in attempts if a.person_id is not None and a.refused is None}


def _record(attempt: _Attempt, decision: Decision) -> dict[str, Any]:
    """The access record of one decided attempt."""
    known = decision.identity is not None
    return {
        "person_id": attempt.person_id if known else None,
        "place_id": attempt.place.id,
        "direction": attempt.direction,
        "at": attempt.at,
        "allowed": decision.allowed,
        "reason": decision.reason.value if decision.reason else "",
        "method": attempt.method,
        "verifier_id": attempt.verifier,
    }


async def _load_persons(
    conn: AsyncConnection, reads: tuple[_PersonsRead, _PersonsRead], ids: set[int]
) -> dict[int, _Person]:
    one, many = reads
    if len(ids) == 1:
        result = await conn.execute(one, {"id": next(iter(ids))})
    else:
        result = await conn.execute(many, {"ids": bound_list(ids, conn.dialect.name)})
    return _persons(result)


def _persons(rows: Iterable[Sequence[Any]]) -> dict[int, _Person]:
    """Rows of `_persons_read`, in its column order, by person id."""
    persons: dict[int, _Person] = {}
    for pid, name, category, state, status, valid_until, home, returned, unit, hooked in rows:
        persons[pid] = _Person(
            Subject(pid, status, category, state, valid_until, home, returned),
            Identity(mask_name(name), category, unit),
            bool(hooked),
        )
    return persons


async def _enter(conn: AsyncConnection, place_id: int, capacity: int, today: date) -> bool:
    """Count one entry unless the place is full; atomic under concurrent entries.

    A single conditional UPDATE both checks and counts, so two entries racing for the last
    place cannot both win (PostgreSQL re-checks the condition after the row lock; SQLite
    runs one writer at a time). The count starts afresh each day, so exits nobody scanned
    do not fill a place for ever.
    """
    stmt = (
        update(PlaceOccupancy)
        .where(
            PlaceOccupancy.place_id == place_id,
            or_(PlaceOccupancy.day != today, PlaceOccupancy.count < capacity),
        )
        .values(
            count=case((PlaceOccupancy.day == today, PlaceOccupancy.count + 1), else_=1),
            day=today,
        )
    )
    if (await conn.execute(stmt)).rowcount == 1:
        return True
    await _ensure_row(conn, place_id, today)
    return (await conn.execute(stmt)).rowcount == 1


async def _leave(conn: AsyncConnection, place_id: int, today: date) -> None:
    await conn.execute(
        update(PlaceOccupancy)
        .where(
            PlaceOccupancy.place_id == place_id,
            PlaceOccupancy.day == today,
            PlaceOccupancy.count > 0,
        )
        .values(count=PlaceOccupancy.count - 1)
    )


async def _ensure_row(conn: AsyncConnection, place_id: int, today: date) -> None:
    values = {"place_id": place_id, "day": today, "count": 0}
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        await conn.execute(pg_insert(PlaceOccupancy).values(values).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        await conn.execute(sqlite_insert(PlaceOccupancy).values(values).on_conflict_do_nothing())


async def occupancy(sessions: async_sessionmaker[AsyncSession], place_id: int, today: date) -> int:
    async with sessions() as session:
        row = (
            await session.execute(
                select(PlaceOccupancy.count, PlaceOccupancy.day).where(
                    PlaceOccupancy.place_id == place_id
                )
            )
        ).first()
    return int(row[0]) if row is not None and row[1] == today else 0


__all__ = [
    "GUARD",
    "IN",
    "OUT",
    "SELF",
    "AccessService",
    "Decision",
    "GateHook",
    "GateNote",
    "Identity",
    "occupancy",
]
