"""tracing: incidents, their log and contacts; the access-record index for retention

Indexes on access_records that make a trace fast (storage/models.py AccessRecord):
- ix_access_records_person_at (person_id, at), from 0005: the case's own records in the
  window, read in time order (one range scan).
- ix_access_records_place_at (place_id, at), from 0005: for each visit of the case, everyone's
  records at that place within reach of the visit (one range scan per visit); the trace's
  self-join runs on it.
- ix_access_records_at (at), added here: the daily retention job deletes records older than
  tracing.retention_days by a range scan instead of reading the whole table. (The trace
  must not scan it: its SQL keeps SQLite's join order with CROSS JOIN so that the planner
  takes ix_access_records_place_at per visit, not the whole window by time.)
Measured in bench/trace_bench.py (bench/README.md): one trace over 10 million records in well
under 2 s on PostgreSQL, over 1 million in well under 5 s on SQLite, with these three.

Revision ID: 0008
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_access_records_at", "access_records", ["at"])

    op.create_table(
        "incidents",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("margin_minutes", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by", sa.String(length=100), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_incidents_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index("ix_incidents_person_id_state", "incidents", ["person_id", "state"])

    op.create_table(
        "incident_log",
        sa.Column("id", _ID, nullable=False),
        sa.Column("incident_id", _ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_log_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incident_log")),
    )
    op.create_index("ix_incident_log_incident_id_at", "incident_log", ["incident_id", "at"])

    op.create_table(
        "incident_contacts",
        sa.Column("incident_id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("overlap_minutes", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place_id", _ID, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("marked_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_contacts_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_incident_contacts_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["place_id"], ["places.id"], name=op.f("fk_incident_contacts_place_id_places")
        ),
        sa.PrimaryKeyConstraint("incident_id", "person_id", name=op.f("pk_incident_contacts")),
    )


def downgrade() -> None:
    op.drop_table("incident_contacts")
    op.drop_index("ix_incident_log_incident_id_at", table_name="incident_log")
    op.drop_table("incident_log")
    op.drop_index("ix_incidents_person_id_state", table_name="incidents")
    op.drop_table("incidents")
    op.drop_index("ix_access_records_at", table_name="access_records")
