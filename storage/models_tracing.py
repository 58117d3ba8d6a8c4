"""Tracing tables (see storage/models.py for the shared base and the core tables): incidents,
their log, and the contacts their trace found."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, UTCDateTime, now_utc


class Incident(Base):
    """A case under management: opened by a health officer for a person, closed by one."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_person_id_state", "person_id", "state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    state: Mapped[str] = mapped_column(String(8), default="open")  # open | closed
    note: Mapped[str] = mapped_column(Text, default="")
    # The trace's window and margin, as run when the incident was opened.
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime] = mapped_column(UTCDateTime)
    margin_minutes: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    opened_by: Mapped[str] = mapped_column(String(100))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_by: Mapped[str | None] = mapped_column(String(100))


class IncidentLog(Base):
    """Every action on an incident, in order: opened, traced, marked, read, closed, …"""

    __tablename__ = "incident_log"
    __table_args__ = (Index("ix_incident_log_incident_id_at", "incident_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text, default="")


class IncidentContact(Base):
    """A contact the incident's trace found; `marked_at` once marked a close contact."""

    __tablename__ = "incident_contacts"

    incident_id: Mapped[int] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer)
    overlap_minutes: Mapped[int] = mapped_column(Integer)
    first_at: Mapped[datetime] = mapped_column(UTCDateTime)
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))  # the longest encounter's
    marked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    marked_by: Mapped[str | None] = mapped_column(String(100))
