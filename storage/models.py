"""SQLAlchemy models: the registry (units, places, persons), WeChat accounts, the audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# SQLite only auto-increments INTEGER primary keys.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Unit(Base):
    __tablename__ = "units"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    parent: Mapped[Unit | None] = relationship(remote_side=[id])


class UnitResponsible(Base):
    """A person responsible for a unit (counsellor, unit head).

    Keyed by person number rather than id, so units.csv may name people that persons.csv
    brings later; it resolves by a join.
    """

    __tablename__ = "unit_responsibles"

    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), primary_key=True
    )
    person_no: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Place(Base):
    __tablename__ = "places"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"), index=True)
    policy: Mapped[str] = mapped_column(String(64), default="open")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)


class Person(Base):
    __tablename__ = "persons"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_no: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(16), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    # The ID number and phone are stored encrypted; the keyed hash finds a person by ID number
    # without decrypting every row.
    id_hash: Mapped[str] = mapped_column(String(64), index=True)
    id_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    phone_cipher: Mapped[bytes | None] = mapped_column(LargeBinary)
    roles: Mapped[str] = mapped_column(String(200), default="")
    responsible_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), index=True)
    home_place_id: Mapped[int | None] = mapped_column(ForeignKey("places.id"), index=True)
    locale: Mapped[str] = mapped_column(String(8), default="zh_CN")
    valid_until: Mapped[date | None] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="active")
    # The live health status (green|yellow|red), kept by the rules engine; its history and
    # reasons live in the engine's own tables. Pass codes and access policies read it here.
    status: Mapped[str] = mapped_column(
        String(8), default="green", server_default="green", index=True
    )
    status_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the person was confirmed back on campus; set by the return feature (issue 8).
    # NULL: not back. The `returned_only` access policy admits only persons with it set.
    returned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc, onupdate=now_utc)

    unit: Mapped[Unit] = relationship(lazy="raise")

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(";") if r)


class WeChatAccount(Base):
    """A follower of the official account, bound to at most one person (and a person to one)."""

    __tablename__ = "wechat_accounts"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"), unique=True)
    locale: Mapped[str | None] = mapped_column(String(8))
    subscribed: Mapped[bool] = mapped_column(default=True)
    bound_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class AuditEntry(Base):
    """Who read or changed whose personal data, and why."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_subject_at", "subject_person_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    actor: Mapped[str] = mapped_column(String(100))  # "person:<id>", "openid:<hash>", "cli"
    action: Mapped[str] = mapped_column(String(40))  # bind, unbind, read, update, import …
    subject_person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    reason: Mapped[str] = mapped_column(Text, default="")


class OutboxMessage(Base):
    """One push to one person, written in the same transaction as its cause.

    The dispatcher (scheduler/dispatcher.py) claims due rows, resolves the person's openid at
    send time, and records how it went. States: pending → sending → sent | failed, or
    pending → cancelled. `attempts` counts claims and doubles as the claim's fencing token.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The claim query: state = 'pending' AND urgent = ? AND not_before <= now.
        Index("ix_outbox_state_urgent_not_before", "state", "urgent", "not_before"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    # {"text": the customer-service text in the recipient's language, "template_data": {...},
    #  "url": optional link}
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    urgent: Mapped[bool] = mapped_column(default=False)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(40))  # errcode or class, no personal data
    channel: Mapped[str | None] = mapped_column(String(16))  # custom | template
    template_msgid: Mapped[int | None] = mapped_column(BigInteger, index=True)
    receipt: Mapped[str | None] = mapped_column(String(40))  # TEMPLATESENDJOBFINISH Status
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- Access (issue 7): pass-code keys, access records, occupancy, place posters ---------------


class PassKey(Base):
    """An Ed25519 key signing pass codes (docs/passcode.md); the private half encrypted.

    The newest key without `retired_at` signs. A rotated key keeps verifying codes that
    expire by `verify_until`, then is only kept for the record.
    """

    __tablename__ = "pass_keys"

    kid: Mapped[str] = mapped_column(String(8), primary_key=True)  # hex of the 4-byte key id
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # raw 32 bytes
    private_cipher: Mapped[bytes] = mapped_column(LargeBinary)  # DataVault ciphertext
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    verify_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessRecord(Base):
    """One guard scan or self check-in: who, where, which way, when, the decision and why.

    The two indexes serve contact tracing: a person's records in a window, then everyone
    at those places in overlapping windows.
    """

    __tablename__ = "access_records"
    __table_args__ = (
        Index("ix_access_records_person_at", "person_id", "at"),
        Index("ix_access_records_place_at", "place_id", "at"),
        Index("ix_access_records_at", "at"),  # the retention purge (migration 0008)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # NULL when the scanned code did not verify: nobody is known then.
    person_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))
    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    allowed: Mapped[bool] = mapped_column()
    reason: Mapped[str] = mapped_column(String(24), default="")  # a campus.access Reason
    method: Mapped[str] = mapped_column(String(8))  # guard | self
    verifier_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))  # the guard


class PlaceOccupancy(Base):
    """Entries minus exits today at a place whose policy has a capacity (reset each day)."""

    __tablename__ = "place_occupancy"

    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    count: Mapped[int] = mapped_column(Integer, default=0)


class PlacePoster(Base):
    """The permanent WeChat QR code (scene `place:<CODE>`) printed on a place's poster."""

    __tablename__ = "place_posters"

    place_id: Mapped[int] = mapped_column(ForeignKey("places.id"), primary_key=True)
    scene: Mapped[str] = mapped_column(String(64))
    ticket: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(255), index=True)  # what the QR code says
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


# -- Health (issue 6): daily reports, the engine's per-person state, status history, warnings --


class HealthReport(Base):
    """A person's report for one campus day; a second report that day replaces it (the
    replaced one is kept in health_report_revisions)."""

    __tablename__ = "health_reports"
    __table_args__ = (
        UniqueConstraint("person_id", "day"),
        Index("ix_health_reports_day_person_id", "day", "person_id"),  # the dashboard (0009)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    day: Mapped[date] = mapped_column(Date)  # the campus day (campus time zone)
    temperature: Mapped[int] = mapped_column(Integer)  # tenths of °C
    symptoms: Mapped[str] = mapped_column(String(200), default="")  # ;-separated codes
    location: Mapped[str] = mapped_column(String(16), default="campus")
    region: Mapped[str] = mapped_column(String(100), default="")
    contact: Mapped[bool] = mapped_column(default=False)
    travel: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(String(8), default="form")  # quick | form | same
    revision: Mapped[int] = mapped_column(Integer, default=1)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HealthReportRevision(Base):
    """A report replaced by a later one of the same day, kept as it was."""

    __tablename__ = "health_report_revisions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    report_id: Mapped[int] = mapped_column(ForeignKey("health_reports.id"), index=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    day: Mapped[date] = mapped_column(Date)
    temperature: Mapped[int] = mapped_column(Integer)
    symptoms: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(String(16), default="campus")
    region: Mapped[str] = mapped_column(String(100), default="")
    contact: Mapped[bool] = mapped_column(default=False)
    travel: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(String(8), default="form")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    replaced_at: Mapped[datetime] = mapped_column(UTCDateTime)


class HealthState(Base):
    """What the rules engine keeps per person beside persons.status / status_since.

    floor_at: the last override; reports before it are no longer read. missed_days:
    consecutive days without a report, counted by the day roll-over (rolled_day: the last
    day counted).
    """

    __tablename__ = "health_states"

    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True)
    reasons: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of reasons
    rule_version: Mapped[str] = mapped_column(String(40), default="")
    missed_days: Mapped[int] = mapped_column(Integer, default=0)
    rolled_day: Mapped[date | None] = mapped_column(Date)
    floor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now_utc)


class StatusChange(Base):
    """Every change of a person's status (and every override), with reasons and rule version."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_changes_person_at", "person_id", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    day: Mapped[date] = mapped_column(Date)
    from_status: Mapped[str] = mapped_column(String(8))
    to_status: Mapped[str] = mapped_column(String(8))
    reasons: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of reasons
    rule_version: Mapped[str] = mapped_column(String(40))
    cause: Mapped[str] = mapped_column(String(16))  # report | rollover | override
    actor: Mapped[str] = mapped_column(String(100), default="engine")
    report_id: Mapped[int | None] = mapped_column(ForeignKey("health_reports.id"))


class HealthRollover(Base):
    """A campus day whose missed reports have been counted (the roll-over runs once a day)."""

    __tablename__ = "health_rollovers"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    done_at: Mapped[datetime] = mapped_column(UTCDateTime)
    missed: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    rule_version: Mapped[str] = mapped_column(String(40), default="")


class HealthWarning(Base):
    """A warning about a person, once per cause (rule) per day, until acknowledged."""

    __tablename__ = "health_warnings"
    __table_args__ = (UniqueConstraint("person_id", "day", "cause"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"))
    day: Mapped[date] = mapped_column(Date)
    cause: Mapped[str] = mapped_column(String(40))  # the rule that fired
    reason: Mapped[str] = mapped_column(Text, default="[]")  # JSON: the reason with its evidence
    status: Mapped[str] = mapped_column(String(8))
    level: Mapped[int] = mapped_column(Integer, default=0)  # how far up the unit tree it went
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acked_by_id: Mapped[int | None] = mapped_column(ForeignKey("persons.id"))


class HealthWarningRecipient(Base):
    """A responsible person a warning went to, and at which level."""

    __tablename__ = "health_warning_recipients"

    warning_id: Mapped[int] = mapped_column(
        ForeignKey("health_warnings.id", ondelete="CASCADE"), primary_key=True
    )
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), primary_key=True, index=True)
    level: Mapped[int] = mapped_column(Integer, default=0)
    notified_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The features' own tables live in their modules; importing them here puts them in
# Base.metadata, which the migrations and their test compare against.
from storage import models_meals, models_returns, models_tracing  # noqa: E402, F401
