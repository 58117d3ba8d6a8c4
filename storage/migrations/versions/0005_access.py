"""access: pass-code keys, access records, place occupancy and posters; persons.returned_at

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("persons") as batch_op:
        batch_op.add_column(sa.Column("returned_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "pass_keys",
        sa.Column("kid", sa.String(length=8), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("private_cipher", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("verify_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("kid", name=op.f("pk_pass_keys")),
    )

    op.create_table(
        "access_records",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=True),
        sa.Column("place_id", _ID, nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("verifier_id", _ID, nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_access_records_person_id_persons")
        ),
        sa.ForeignKeyConstraint(
            ["place_id"], ["places.id"], name=op.f("fk_access_records_place_id_places")
        ),
        sa.ForeignKeyConstraint(
            ["verifier_id"], ["persons.id"], name=op.f("fk_access_records_verifier_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_records")),
    )
    op.create_index("ix_access_records_person_at", "access_records", ["person_id", "at"])
    op.create_index("ix_access_records_place_at", "access_records", ["place_id", "at"])

    op.create_table(
        "place_occupancy",
        sa.Column("place_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["place_id"], ["places.id"], name=op.f("fk_place_occupancy_place_id_places")
        ),
        sa.PrimaryKeyConstraint("place_id", name=op.f("pk_place_occupancy")),
    )

    op.create_table(
        "place_posters",
        sa.Column("place_id", _ID, nullable=False),
        sa.Column("scene", sa.String(length=64), nullable=False),
        sa.Column("ticket", sa.String(length=255), nullable=False),
        sa.Column("url", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["place_id"], ["places.id"], name=op.f("fk_place_posters_place_id_places")
        ),
        sa.PrimaryKeyConstraint("place_id", name=op.f("pk_place_posters")),
    )
    op.create_index("ix_place_posters_url", "place_posters", ["url"])


def downgrade() -> None:
    op.drop_index("ix_place_posters_url", table_name="place_posters")
    op.drop_table("place_posters")
    op.drop_table("place_occupancy")
    op.drop_index("ix_access_records_place_at", table_name="access_records")
    op.drop_index("ix_access_records_person_at", table_name="access_records")
    op.drop_table("access_records")
    op.drop_table("pass_keys")
    with op.batch_alter_table("persons") as batch_op:
        batch_op.drop_column("returned_at")
