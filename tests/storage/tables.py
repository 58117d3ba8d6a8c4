"""A small schema for the storage tests: a table of every column type the hot paths write
(a foreign key, text, UTCDateTime, Date, Boolean, an integer with a Python-side default)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import Boolean, Column, Date, ForeignKey, Integer, MetaData, String, Table

from storage.models import UTCDateTime

META = MetaData()
PARENT = Table("parent", META, Column("id", Integer, primary_key=True))
ROWS = Table(
    "rows",
    META,
    Column("id", Integer, primary_key=True),
    Column("parent_id", ForeignKey("parent.id")),
    Column("name", String(20)),
    Column("at", UTCDateTime),
    Column("day", Date),
    Column("flag", Boolean),
    Column("live", Integer, default=1),
)
COLUMNS = ("id", "parent_id", "name", "at", "day", "flag", "live")
EAST8 = timezone(timedelta(hours=8))


def row(i: int, **over: object) -> dict[str, object]:
    values: dict[str, object] = {
        "id": i,
        "parent_id": 1,
        "name": f"n{i}",
        "at": datetime(2026, 11, 26, 8, 30, 15, 123456, tzinfo=EAST8),
        "day": date(2026, 11, 26),
        "flag": i % 2 == 0,
        "live": 1,
    }
    return values | over
