"""The audit trail of personal data: who read or changed whose, and why."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AuditEntry


def record(
    session: AsyncSession, actor: str, action: str, subject_person_id: int | None, reason: str = ""
) -> None:
    """Add an audit row to the caller's transaction, so it commits or rolls back with the change."""
    session.add(
        AuditEntry(actor=actor, action=action, subject_person_id=subject_person_id, reason=reason)
    )
