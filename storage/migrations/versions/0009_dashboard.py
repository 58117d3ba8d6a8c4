"""dashboard: an index on health_reports (day, person_id) for the per-day aggregates

Revision ID: 0009
Revises: 0004, 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = ("0004", "0005")  # health_reports is made on the health branch
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The dashboard counts a day's reports per unit: the unique (person_id, day) index cannot
    # serve a day range, this one can (and covers the join key, so an index-only scan).
    op.create_index("ix_health_reports_day_person_id", "health_reports", ["day", "person_id"])


def downgrade() -> None:
    op.drop_index("ix_health_reports_day_person_id", table_name="health_reports")
