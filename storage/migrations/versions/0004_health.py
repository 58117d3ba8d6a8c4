"""health: daily reports and their revisions, engine state, status changes, roll-overs, warnings

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def _report_columns() -> list[sa.Column]:
    return [
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("temperature", sa.Integer(), nullable=False),
        sa.Column("symptoms", sa.String(length=200), nullable=False),
        sa.Column("location", sa.String(length=16), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("contact", sa.Boolean(), nullable=False),
        sa.Column("travel", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("submitted_at", _AT, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "health_reports",
        sa.Column("id", _ID, nullable=False),
        *_report_columns(),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_health_reports_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_reports")),
        sa.UniqueConstraint("person_id", "day", name=op.f("uq_health_reports_person_id")),
    )
    op.create_table(
        "health_report_revisions",
        sa.Column("id", _ID, nullable=False),
        sa.Column("report_id", _ID, nullable=False),
        *_report_columns(),
        sa.Column("replaced_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_health_report_revisions_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["health_reports.id"],
            name=op.f("fk_health_report_revisions_report_id_health_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_report_revisions")),
    )
    op.create_index(
        op.f("ix_health_report_revisions_report_id"),
        "health_report_revisions",
        ["report_id"],
        unique=False,
    )
    op.create_table(
        "health_states",
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("rule_version", sa.String(length=40), nullable=False),
        sa.Column("missed_days", sa.Integer(), nullable=False),
        sa.Column("rolled_day", sa.Date(), nullable=True),
        sa.Column("floor_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_health_states_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_health_states")),
    )
    op.create_table(
        "status_changes",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("from_status", sa.String(length=8), nullable=False),
        sa.Column("to_status", sa.String(length=8), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("rule_version", sa.String(length=40), nullable=False),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("report_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_status_changes_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["health_reports.id"],
            name=op.f("fk_status_changes_report_id_health_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_changes")),
    )
    op.create_index(
        "ix_status_changes_person_at", "status_changes", ["person_id", "at"], unique=False
    )
    op.create_table(
        "health_rollovers",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("done_at", _AT, nullable=False),
        sa.Column("missed", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("rule_version", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_health_rollovers")),
    )
    op.create_table(
        "health_warnings",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("cause", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("next_escalation_at", _AT, nullable=True),
        sa.Column("acked_at", _AT, nullable=True),
        sa.Column("acked_by_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["acked_by_id"], ["persons.id"], name=op.f("fk_health_warnings_acked_by_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_health_warnings_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_warnings")),
        sa.UniqueConstraint("person_id", "day", "cause", name=op.f("uq_health_warnings_person_id")),
    )
    op.create_index(
        op.f("ix_health_warnings_next_escalation_at"),
        "health_warnings",
        ["next_escalation_at"],
        unique=False,
    )
    op.create_table(
        "health_warning_recipients",
        sa.Column("warning_id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("notified_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["persons.id"],
            name=op.f("fk_health_warning_recipients_person_id_persons"),
        ),
        sa.ForeignKeyConstraint(
            ["warning_id"],
            ["health_warnings.id"],
            name=op.f("fk_health_warning_recipients_warning_id_health_warnings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "warning_id", "person_id", name=op.f("pk_health_warning_recipients")
        ),
    )
    op.create_index(
        op.f("ix_health_warning_recipients_person_id"),
        "health_warning_recipients",
        ["person_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_health_warning_recipients_person_id"), table_name="health_warning_recipients"
    )
    op.drop_table("health_warning_recipients")
    op.drop_index(op.f("ix_health_warnings_next_escalation_at"), table_name="health_warnings")
    op.drop_table("health_warnings")
    op.drop_table("health_rollovers")
    op.drop_index("ix_status_changes_person_at", table_name="status_changes")
    op.drop_table("status_changes")
    op.drop_table("health_states")
    op.drop_index(
        op.f("ix_health_report_revisions_report_id"), table_name="health_report_revisions"
    )
    op.drop_table("health_report_revisions")
    op.drop_table("health_reports")
