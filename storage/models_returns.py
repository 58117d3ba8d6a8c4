"""Returns tables (see storage/models.py for the shared base and the core tables).

A batch (batches.csv) says who may come back when and how many a day; an application is one
student's request to come back in a batch on a day; approvers are the responsible persons a
step of its approval chain went to; decisions are what they (or the auto-approval rule) said.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, UTCDateTime, now_utc


class ReturnBatch(Base):
    __tablename__ = "return_batches"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # graduate | non_graduate | freshman
    arrive_from: Mapped[date] = mapped_column(Date)
    arrive_to: Mapped[date] = mapped_column(Date)
    daily_quota: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)


class ReturnBatchUnit(Base):
    """A unit whose members (with its sub-units) may apply; a batch without any: every unit."""

    __tablename__ = "return_batch_units"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("return_batches.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), primary_key=True, index=True)


class ReturnDayCount(Base):
    """Places taken on one arrival day of a batch; moved by conditional UPDATEs only."""

    __tablename__ = "return_day_counts"

    batch_id: Mapped[int] = mapped_column(
        ForeignKey("return_batches.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    taken: Mapped[int] = mapped_column(Integer, default=0)


class ReturnApplication(Base):
    """One application. States: pending → approved → arrived; pending → rejected | withdrawn.

    `live` is 1 while the application is pending or approved and NULL otherwise, so the
    unique (person_id, live) allows one open application per person (NULLs never collide).
    """

    __tablename__ = "return_applications"
    __table_args__ = (
        UniqueConstraint("person_id", "live"),
        Index("ix_return_applications_batch_state", "batch_id", "state"),
        Index("ix_return_applications_state_step_since", "state", "step_since"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("return_batches.id"))
    arrive_on: Mapped[date] = mapped_column(Date)
    transport: Mapped[str] = mapped_column(String(8))  # train | flight | car | other
    transport_no: Mapped[str] = mapped_column(String(32), default="")
    region: Mapped[str] = mapped_column(String(100))  # where the student travels from
    state: Mapped[str] = mapped_column(String(12), default="pending")
    live: Mapped[int | None] = mapped_column(Integer, default=1)
    checkin_days: Mapped[int] = mapped_column(Integer, default=0)  # the streak when submitted
    step: Mapped[int] = mapped_column(Integer, default=0)  # the approval step now waiting
    step_since: Mapped[datetime] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalations: Mapped[int] = mapped_column(Integer, default=0)  # at the current step
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str] = mapped_column(String(40), default="")  # person:<id> | rule:auto
    reason: Mapped[str] = mapped_column(Text, default="")  # a rejection's reason
    arrived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    arrived_on: Mapped[date | None] = mapped_column(Date)  # the campus day of the arrival
    arrival_place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"))


class ReturnApprover(Base):
    """Who may decide a step of an application: its approvers and those it escalated to."""

    __tablename__ = "return_approvers"

    application_id: Mapped[int] = mapped_column(
        ForeignKey("return_applications.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True, index=True)
    level: Mapped[int] = mapped_column(Integer, default=0)  # 0, or how far it was escalated
    notified_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReturnDecision(Base):
    """A step's decision, by a person or by the auto-approval rule."""

    __tablename__ = "return_decisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("return_applications.id", ondelete="CASCADE"), index=True
    )
    step: Mapped[int] = mapped_column(Integer)
    approved: Mapped[bool] = mapped_column()
    decided_by: Mapped[str] = mapped_column(String(40))  # person:<id> | rule:auto
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)
