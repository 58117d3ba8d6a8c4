"""returns: batches, their units and day counts, applications, approvers, decisions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "return_batches",
        sa.Column("id", _ID, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("arrive_from", sa.Date(), nullable=False),
        sa.Column("arrive_to", sa.Date(), nullable=False),
        sa.Column("daily_quota", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_batches")),
        sa.UniqueConstraint("code", name=op.f("uq_return_batches_code")),
    )

    op.create_table(
        "return_batch_units",
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("unit_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["return_batches.id"],
            name=op.f("fk_return_batch_units_batch_id_return_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_return_batch_units_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("batch_id", "unit_id", name=op.f("pk_return_batch_units")),
    )
    op.create_index(
        op.f("ix_return_batch_units_unit_id"), "return_batch_units", ["unit_id"], unique=False
    )

    op.create_table(
        "return_day_counts",
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("taken", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["return_batches.id"],
            name=op.f("fk_return_day_counts_batch_id_return_batches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("batch_id", "day", name=op.f("pk_return_day_counts")),
    )

    op.create_table(
        "return_applications",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("batch_id", _ID, nullable=False),
        sa.Column("arrive_on", sa.Date(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("transport_no", sa.String(length=32), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("live", sa.Integer(), nullable=True),
        sa.Column("checkin_days", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("escalations", sa.Integer(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_on", sa.Date(), nullable=True),
        sa.Column("arrival_place_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_return_applications_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["return_batches.id"],
            name=op.f("fk_return_applications_batch_id_return_batches"),
        ),
        sa.ForeignKeyConstraint(
            ["arrival_place_id"],
            ["places.id"],
            name=op.f("fk_return_applications_arrival_place_id_places"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_applications")),
        sa.UniqueConstraint("person_id", "live", name=op.f("uq_return_applications_person_id")),
    )
    op.create_index(op.f("ix_return_applications_person_id"), "return_applications", ["person_id"])
    op.create_index(
        "ix_return_applications_batch_state", "return_applications", ["batch_id", "state"]
    )
    op.create_index(
        "ix_return_applications_state_step_since", "return_applications", ["state", "step_since"]
    )

    op.create_table(
        "return_approvers",
        sa.Column("application_id", _ID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["return_applications.id"],
            name=op.f("fk_return_approvers_application_id_return_applications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_return_approvers_person_id_persons")
        ),
        sa.PrimaryKeyConstraint(
            "application_id", "step", "person_id", name=op.f("pk_return_approvers")
        ),
    )
    op.create_index(op.f("ix_return_approvers_person_id"), "return_approvers", ["person_id"])

    op.create_table(
        "return_decisions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("application_id", _ID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("decided_by", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["return_applications.id"],
            name=op.f("fk_return_decisions_application_id_return_applications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_return_decisions")),
    )
    op.create_index(
        op.f("ix_return_decisions_application_id"), "return_decisions", ["application_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_return_decisions_application_id"), table_name="return_decisions")
    op.drop_table("return_decisions")
    op.drop_index(op.f("ix_return_approvers_person_id"), table_name="return_approvers")
    op.drop_table("return_approvers")
    op.drop_index("ix_return_applications_state_step_since", table_name="return_applications")
    op.drop_index("ix_return_applications_batch_state", table_name="return_applications")
    op.drop_index(op.f("ix_return_applications_person_id"), table_name="return_applications")
    op.drop_table("return_applications")
    op.drop_table("return_day_counts")
    op.drop_index(op.f("ix_return_batch_units_unit_id"), table_name="return_batch_units")
    op.drop_table("return_batch_units")
    op.drop_table("return_batches")
