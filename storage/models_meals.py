"""Meals tables (issue 9): the canteens' menus with their portion counters, and the orders.

See storage/models.py for the shared base and the core tables.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, UTCDateTime, now_utc


class MealItem(Base):
    """One dish a canteen offers for one slot of one day (a row of menus.csv).

    `ordered` counts the portions of placed orders; it only moves by a conditional UPDATE in
    the same transaction as the order (campus/meals/ordering.py), so it never passes
    `capacity`.
    """

    __tablename__ = "meal_items"
    __table_args__ = (
        UniqueConstraint("canteen_id", "day", "slot", "item_code"),
        Index("ix_meal_items_day_slot", "day", "slot"),
        CheckConstraint("ordered >= 0 AND ordered <= capacity", name="portions"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    canteen_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    day: Mapped[date] = mapped_column(Date)
    slot: Mapped[str] = mapped_column(String(16))  # breakfast | lunch | dinner
    item_code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    ordered: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)


class MealOrder(Base):
    """A person's order of some portions of one item; cancelled orders are kept.

    The unit price and where it goes (delivery to a building, or pick-up) are fixed when the
    order is placed, so a later menu import or a change of status does not rewrite it.
    """

    __tablename__ = "meal_orders"
    __table_args__ = (
        Index("ix_meal_orders_person_state", "person_id", "state"),
        Index("ix_meal_orders_item_state", "item_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("meal_items.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    price_cents: Mapped[int] = mapped_column(Integer)  # per portion, when ordered
    delivery: Mapped[bool] = mapped_column(default=False)
    # The building it is delivered to (NULL: pick-up, or no home place on record).
    building_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))
    state: Mapped[str] = mapped_column(String(16), default="placed")  # placed | cancelled
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
