"""Test helpers for access (issue 7): a small place tree, a guard, and reading replies back."""

from __future__ import annotations

import io
from typing import Any

import zxingcpp
from PIL import Image
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus.secrets import DataVault
from storage.models import Person, Place, Unit
from tests.support import resident_id

GUARD_ID = resident_id("31010419540124762")


async def seed_places(sessions: async_sessionmaker[AsyncSession], vault: DataVault) -> None:
    """Places under CAMPUS (gate, dorm, library, lab) and a guard G001 (unit SEC).

    Needs seed_campus first: S001 gets DORM-1 as home, S002 none.
    """
    async with sessions.begin() as session:
        campus = Place(code="CAMPUS", name="Main Campus", kind="campus", policy="green_only")
        session.add(campus)
        await session.flush()
        places = {}
        for code, name, kind, policy in [
            ("GATE-N", "北门 North Gate", "gate", "green_only"),
            ("DORM-1", "Dorm 1", "dorm", "residents_only"),
            ("LIB", "Library", "library", "returned_only"),
            ("LAB-1", "Lab 1", "lab", "staff_only"),
            ("GRID-1", "Grid 1", "grid", "open"),
        ]:
            places[code] = Place(
                code=code, name=name, kind=kind, policy=policy, parent_id=campus.id
            )
            session.add(places[code])
        await session.flush()
        room = Place(
            code="DORM-1-101",
            name="Dorm 1 Room 101",
            kind="house",
            policy="residents_only",
            parent_id=places["DORM-1"].id,
        )
        session.add(room)
        sec = Unit(code="SEC", name="Security Office")
        session.add(sec)
        await session.flush()
        session.add(
            Person(
                person_no="G001",
                name="马保安",
                category="staff",
                unit_id=sec.id,
                roles="guard",
                id_hash=vault.lookup_hash(GUARD_ID, "id"),
                id_cipher=vault.encrypt(GUARD_ID),
                locale="zh_CN",
            )
        )
        await session.execute(
            update(Person).where(Person.person_no == "S001").values(home_place_id=room.id)
        )


async def person_id(sessions: async_sessionmaker[AsyncSession], person_no: str) -> int:
    async with sessions() as session:
        return int(
            (
                await session.execute(select(Person.id).where(Person.person_no == person_no))
            ).scalar_one()
        )


async def set_person(
    sessions: async_sessionmaker[AsyncSession], person_no: str, **values: Any
) -> None:
    async with sessions.begin() as session:
        await session.execute(update(Person).where(Person.person_no == person_no).values(**values))


def decode_qr(png: bytes) -> str | None:
    with Image.open(io.BytesIO(png)) as image:
        found = zxingcpp.read_barcode(image.convert("RGB"))
    return found.text if found is not None and found.valid else None
