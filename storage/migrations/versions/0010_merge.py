"""merge: the features' branches (outbox, health, returns, meals, tracing, dashboard) join

The features were migrated on branches from the registry (0002) and access (0005) revisions;
this revision joins them, so `alembic upgrade head` (singular) works for operators as well as
`healthbot db upgrade` (which upgrades to all heads). It changes nothing in the schema.

Revision ID: 0010
Revises: 0003, 0006, 0007, 0008, 0009
Create Date: 2026-11-26
"""

from __future__ import annotations

revision = "0010"
down_revision = ("0003", "0006", "0007", "0008", "0009")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
