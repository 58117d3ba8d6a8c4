"""Access records older than the retention period (rules file `tracing.retention_days`) go."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AccessRecord

CHUNK = 10_000


async def purge_access_records(
    sessions: async_sessionmaker[AsyncSession],
    now: datetime,
    retention_days: int,
    chunk: int = CHUNK,
) -> int:
    """Delete the records from before `now - retention_days`, in chunks (short transactions,
    so guards' scans are never held up by a long delete); returns how many went."""
    cutoff = now - timedelta(days=retention_days)
    total = 0
    while True:
        oldest = select(AccessRecord.id).where(AccessRecord.at < cutoff).limit(chunk)
        async with sessions.begin() as session:
            result = await session.execute(
                delete(AccessRecord).where(AccessRecord.id.in_(oldest.scalar_subquery()))
            )
        n = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += n
        if n < chunk:
            return total
