"""SQLAlchemy models: the registry (units, places, persons), WeChat accounts, the audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
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
