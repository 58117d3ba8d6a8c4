"""persons.status: the live health status, read by pass codes and access policies

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=8), nullable=False, server_default="green")
        )
        batch_op.add_column(sa.Column("status_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_persons_status", ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("persons") as batch_op:
        batch_op.drop_index("ix_persons_status")
        batch_op.drop_column("status_since")
        batch_op.drop_column("status")
