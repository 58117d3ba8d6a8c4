"""meals: menu items with their portion counters, and meal orders

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "meal_items",
        sa.Column("id", _ID, nullable=False),
        sa.Column("canteen_id", _ID, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("slot", sa.String(length=16), nullable=False),
        sa.Column("item_code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("ordered", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "ordered >= 0 AND ordered <= capacity", name=op.f("ck_meal_items_portions")
        ),
        sa.ForeignKeyConstraint(
            ["canteen_id"], ["places.id"], name=op.f("fk_meal_items_canteen_id_places")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meal_items")),
        sa.UniqueConstraint(
            "canteen_id", "day", "slot", "item_code", name=op.f("uq_meal_items_canteen_id")
        ),
    )
    op.create_index("ix_meal_items_day_slot", "meal_items", ["day", "slot"])

    op.create_table(
        "meal_orders",
        sa.Column("id", _ID, nullable=False),
        sa.Column("person_id", _ID, nullable=False),
        sa.Column("item_id", _ID, nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price_cents", sa.Integer(), nullable=False),
        sa.Column("delivery", sa.Boolean(), nullable=False),
        sa.Column("building_id", _ID, nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["building_id"], ["places.id"], name=op.f("fk_meal_orders_building_id_places")
        ),
        sa.ForeignKeyConstraint(
            ["item_id"], ["meal_items.id"], name=op.f("fk_meal_orders_item_id_meal_items")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["persons.id"], name=op.f("fk_meal_orders_person_id_persons")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meal_orders")),
    )
    op.create_index("ix_meal_orders_person_state", "meal_orders", ["person_id", "state"])
    op.create_index("ix_meal_orders_item_state", "meal_orders", ["item_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_meal_orders_item_state", table_name="meal_orders")
    op.drop_index("ix_meal_orders_person_state", table_name="meal_orders")
    op.drop_table("meal_orders")
    op.drop_index("ix_meal_items_day_slot", table_name="meal_items")
    op.drop_table("meal_items")
