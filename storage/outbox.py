"""The outbox's SQL: insert ignoring duplicates, claim due rows, record outcomes, purge.

Every outcome is fenced by the claim: a row claimed with `attempts = n` is only updated by the
holder of that claim (`WHERE id = ? AND attempts = n AND state = 'sending'`), so a dispatcher
whose claim expired and was taken over can't overwrite what the new holder records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Insert, Table, and_, case, delete, func, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage, WeChatAccount

outbox = cast(Table, OutboxMessage.__table__)
O = outbox.c  # noqa: E741 (short column namespace, used throughout)

PENDING, SENDING, SENT, FAILED, CANCELLED = "pending", "sending", "sent", "failed", "cancelled"
STATES = (PENDING, SENDING, SENT, FAILED, CANCELLED)
FINAL_STATES = (SENT, FAILED, CANCELLED)
ANALYZE_AFTER = 10_000
_QUEUED, _ANALYZED = "outbox_queued", "outbox_analyzed"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A row this dispatcher holds, with the account to send it to (None: not bound)."""

    id: int
    attempts: int  # the claim's fencing token
    person_id: int
    kind: str
    payload: Mapping[str, Any]
    urgent: bool
    not_before: datetime
    openid: str | None = None
    last_seen_at: datetime | None = None


def _insert(session: AsyncSession) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(outbox)
    if dialect == "sqlite":
        return sqlite.insert(outbox)
    raise NotImplementedError(f"the outbox supports sqlite and postgresql, not {dialect!r}")


async def insert_ignoring_duplicates(
    session: AsyncSession, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert rows in the caller's transaction; a row whose idempotency key exists is skipped.

    Returns how many rows were new. One statement run as an executemany: SQLAlchemy sends it
    in pages of many VALUES ("insertmanyvalues"), and RETURNING counts what was inserted.
    """
    if not rows:
        return 0
    stmt = (
        _insert(session)  # type: ignore[attr-defined]
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(O.id)
    )
    added = len((await session.execute(stmt, list(rows))).all())
    await _analyze_after_bulk(session, added)
    return added


async def _analyze_after_bulk(session: AsyncSession, added: int) -> None:
    """Refresh PostgreSQL's statistics once a transaction has queued many rows.

    Until autovacuum gets to it, the planner believes the outbox as small as it last saw it,
    and then claims with a bitmap scan and a sort of every due row (100 ms a claim for a
    100,000-person broadcast) instead of walking the index. ANALYZE sees the transaction's own
    rows; it runs in a savepoint so a refusal can't spoil the caller's transaction.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    total = session.info.get(_QUEUED, 0) + added
    session.info[_QUEUED] = total
    if total < ANALYZE_AFTER or session.info.get(_ANALYZED):
        return
    session.info[_ANALYZED] = True
    try:
        async with session.begin_nested():
            await session.execute(text("ANALYZE outbox"))
    except DBAPIError:
        log.warning("could not ANALYZE the outbox; claims may be slow until autovacuum does")


async def claim(
    session: AsyncSession, *, now: datetime, until: datetime, limit: int, urgent_only: bool = False
) -> list[Claimed]:
    """Mark up to `limit` due rows `sending` until `until`; urgent ones first.

    `urgent_only` during quiet hours: a non-urgent push that fell due earlier (a backlog after
    an outage or a quota pause) waits for the morning like one enqueued at night.

    On PostgreSQL the candidates are locked with FOR UPDATE SKIP LOCKED, so dispatchers in
    several processes claim disjoint rows without waiting for each other. SQLite renders no
    FOR UPDATE; its single writer makes the UPDATE atomic, and one process dispatches there.
    The caller commits.
    """
    claimed: list[Any] = []
    for urgent in (True,) if urgent_only else (True, False):
        room = limit - len(claimed)
        if room <= 0:
            break
        due = (
            select(O.id)
            .where(O.state == PENDING, O.urgent.is_(urgent), O.not_before <= now)
            # not_before alone: the index's order. A tie-break on id would make PostgreSQL
            # sort every row of a broadcast (they share one not_before) on each claim.
            .order_by(O.not_before)
            .limit(room)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(outbox)
            .where(O.id.in_(due.scalar_subquery()))
            .values(state=SENDING, claimed_until=until, attempts=O.attempts + 1)
            .returning(O.id, O.attempts, O.person_id, O.kind, O.payload, O.urgent, O.not_before)
        )
        claimed.extend((await session.execute(stmt)).all())
    if not claimed:
        return []
    accounts = {
        row.person_id: row
        for row in await session.execute(
            select(WeChatAccount.person_id, WeChatAccount.openid, WeChatAccount.last_seen_at).where(
                WeChatAccount.person_id.in_({r.person_id for r in claimed})
            )
        )
    }
    rows = []
    for r in claimed:
        account = accounts.get(r.person_id)
        rows.append(
            Claimed(
                id=r.id,
                attempts=r.attempts,
                person_id=r.person_id,
                kind=r.kind,
                payload=r.payload,
                urgent=r.urgent,
                not_before=r.not_before,
                openid=account.openid if account is not None else None,
                last_seen_at=account.last_seen_at if account is not None else None,
            )
        )
    rows.sort(key=lambda c: (not c.urgent, c.not_before))
    return rows


def _held(row_id: int, attempts: int) -> Any:
    return and_(O.id == row_id, O.attempts == attempts, O.state == SENDING)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A push WeChat accepted, to be marked sent."""

    id: int
    attempts: int
    channel: str
    msgid: int | None = None


async def mark_sent(session: AsyncSession, done: Sequence[Accepted], *, now: datetime) -> set[int]:
    """Mark pushes WeChat accepted as sent, in one statement; returns the ids still ours.

    One statement for a group, so the dispatcher can record what all its workers had accepted
    in the meantime in one short transaction (a group commit) instead of one each.
    """
    if not done:
        return set()
    msgids = {d.id: d.msgid for d in done if d.msgid is not None}
    channels = {d.id: d.channel for d in done}
    result = await session.execute(
        update(outbox)
        .where(tuple_(O.id, O.attempts).in_([(d.id, d.attempts) for d in done]), O.state == SENDING)
        .values(
            state=SENT,
            sent_at=now,
            channel=case(channels, value=O.id),
            template_msgid=case(msgids, value=O.id, else_=None) if msgids else None,
            claimed_until=None,
            last_error=None,
        )
        .returning(O.id)
    )
    return set(result.scalars())


async def mark_failed(
    session: AsyncSession, row_id: int, attempts: int, *, error: str, channel: str | None = None
) -> bool:
    result = await session.execute(
        update(outbox)
        .where(_held(row_id, attempts))
        .values(state=FAILED, last_error=error[:40], channel=channel, claimed_until=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def retry_later(
    session: AsyncSession,
    row_id: int,
    attempts: int,
    *,
    not_before: datetime,
    error: str,
    count_attempt: bool = True,
) -> bool:
    """Back to pending, due at `not_before`; `count_attempt=False` when nothing was tried."""
    values: dict[str, Any] = {
        "state": PENDING,
        "not_before": not_before,
        "last_error": error[:40],
        "claimed_until": None,
    }
    if not count_attempt:
        values["attempts"] = O.attempts - 1
    result = await session.execute(update(outbox).where(_held(row_id, attempts)).values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, held: Sequence[tuple[int, int]]) -> int:
    """Give back claimed rows that were never tried (a dispatcher stopping)."""
    released = 0
    for row_id, attempts in held:
        result = await session.execute(
            update(outbox)
            .where(_held(row_id, attempts))
            .values(state=PENDING, attempts=O.attempts - 1, claimed_until=None)
        )
        released += result.rowcount  # type: ignore[attr-defined]
    return released


async def reclaim_expired(
    session: AsyncSession, *, now: datetime, max_attempts: int
) -> tuple[int, int]:
    """Rows whose dispatcher died mid-claim: pending again, or failed once out of attempts.

    Returns (requeued, failed).
    """
    expired = and_(O.state == SENDING, O.claimed_until < now)
    failed = await session.execute(
        update(outbox)
        .where(expired, O.attempts >= max_attempts)
        .values(state=FAILED, last_error="abandoned", claimed_until=None)
    )
    requeued = await session.execute(
        update(outbox).where(expired).values(state=PENDING, claimed_until=None)
    )
    return requeued.rowcount, failed.rowcount  # type: ignore[attr-defined]


async def record_receipt(session: AsyncSession, msgid: int, status: str) -> str | None:
    """Store a TEMPLATESENDJOBFINISH status on the row sent with `msgid`; returns its kind.

    A failed delivery turns the row `failed` with the reason (`user_block`, `system_failed`).
    """
    failed = status != "success"
    reason = status.split(":", 1)[-1].strip().replace(" ", "_") or "unknown"
    result = await session.execute(
        update(outbox)
        .where(O.template_msgid == msgid, O.channel == "template")
        .values(
            receipt=status[:40],
            state=case((O.state == SENT, FAILED if failed else SENT), else_=O.state),
            last_error=reason[:40] if failed else O.last_error,
        )
        .returning(O.kind)
    )
    row = result.first()
    return None if row is None else str(row.kind)


async def cancel(session: AsyncSession, key: str) -> bool:
    result = await session.execute(
        update(outbox).where(O.idempotency_key == key, O.state == PENDING).values(state=CANCELLED)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def purge(session: AsyncSession, *, due_before: datetime, limit: int = 5000) -> int:
    """Delete up to `limit` finished rows that fell due before `due_before`."""
    old = (
        select(O.id)
        .where(O.state.in_(FINAL_STATES), O.not_before < due_before)
        .limit(limit)
        .scalar_subquery()
    )
    result = await session.execute(delete(outbox).where(O.id.in_(old)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def depth(session: AsyncSession, states: Sequence[str] = STATES) -> dict[str, int]:
    """Rows by state; ask for (pending, sending) to count only the backlog (cheap, indexed)."""
    counts = dict.fromkeys(states, 0)
    stmt = select(O.state, func.count()).group_by(O.state)
    if tuple(states) != STATES:
        stmt = stmt.where(O.state.in_(states))
    for state, n in await session.execute(stmt):
        counts[state] = int(n)
    return counts
