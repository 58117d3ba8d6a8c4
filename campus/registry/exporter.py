"""`healthbot export`: registries back in their import format, ID numbers and phones in clear."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import TextIO

import click
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.settings import Settings
from campus import audit
from campus.meals.menus import menu_rows
from campus.registry.csvfile import row_writer
from campus.registry.database import DatabaseNotReady, open_database
from campus.registry.fields import canonical_roles
from campus.registry.formats import COLUMNS
from campus.secrets import CannotDecrypt, DataVault
from storage.models import Person, Place, Unit, UnitResponsible

log = logging.getLogger(__name__)
# Rows fetched per round trip while streaming, so memory stays flat for 100,000 persons.
_BATCH = 2000


async def run_export(settings: Settings, kind: str, out: TextIO) -> None:
    """The CLI's entry: write registry `kind` of the configured database to `out`."""
    vault = DataVault.from_setting(settings.data_key)
    try:
        async with open_database(settings) as sessions:
            await export_rows(sessions, vault, kind, out)
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from None
    except CannotDecrypt:
        raise click.ClickException(
            "stored personal data cannot be decrypted with HEALTHBOT_DATA_KEY"
        ) from None


async def export_rows(
    sessions: async_sessionmaker[AsyncSession], vault: DataVault, kind: str, out: TextIO
) -> int:
    """Write the header and every row of `kind`; return the number of rows."""
    if kind not in COLUMNS:
        raise ValueError(f"unknown registry {kind!r} (one of {', '.join(COLUMNS)})")
    # Recorded first and on its own: the export reads everyone's personal data even if it
    # fails half-way, and a long read must not hold SQLite's write lock.
    async with sessions.begin() as session:
        audit.record(session, "cli", "export", None, f"export {kind}")
    async with sessions() as session:
        if kind == "units":
            rows = _units(session)
        elif kind == "places":
            rows = _places(session)
        elif kind == "menus":
            rows = menu_rows(session)
        else:
            rows = _persons(session, vault)
        write = row_writer(out, COLUMNS[kind])
        count = 0
        async for row in rows:
            write(row)
            count += 1
    log.info("export %s: %d rows", kind, count)
    return count


async def _units(session: AsyncSession) -> AsyncIterator[list[str]]:
    held: dict[int, list[str]] = defaultdict(list)
    for unit_id, person_no in await session.execute(
        select(UnitResponsible.unit_id, UnitResponsible.person_no)
    ):
        held[unit_id].append(person_no)
    parent = aliased(Unit)
    stmt = (
        select(Unit.id, Unit.code, Unit.name, parent.code)
        .outerjoin(parent, parent.id == Unit.parent_id)
        .order_by(Unit.code)
    )
    for unit_id, code, name, parent_code in await session.execute(stmt):
        yield [code, name, parent_code or "", ";".join(sorted(held.get(unit_id, ())))]


async def _places(session: AsyncSession) -> AsyncIterator[list[str]]:
    parent = aliased(Place)
    stmt = (
        select(Place.code, Place.name, Place.kind, parent.code, Place.policy)
        .outerjoin(parent, parent.id == Place.parent_id)
        .order_by(Place.code)
    )
    for code, name, kind, parent_code, policy in await session.execute(stmt):
        yield [code, name, kind, parent_code or "", policy]


async def _persons(session: AsyncSession, vault: DataVault) -> AsyncIterator[list[str]]:
    host = aliased(Person)
    stmt = (
        select(
            Person.person_no,
            Person.name,
            Person.category,
            Unit.code,
            Person.id_cipher,
            Person.phone_cipher,
            Person.roles,
            host.person_no,
            Place.code,
            Person.locale,
        )
        .join(Unit, Unit.id == Person.unit_id)
        .outerjoin(host, host.id == Person.responsible_id)
        .outerjoin(Place, Place.id == Person.home_place_id)
        .order_by(Person.person_no)
        .execution_options(yield_per=_BATCH)
    )
    result = await session.stream(stmt)
    async for (
        no,
        name,
        category,
        unit,
        id_cipher,
        phone_cipher,
        roles,
        host_no,
        home,
        loc,
    ) in result:
        yield [
            no,
            name,
            category,
            unit,
            vault.decrypt(id_cipher),
            vault.decrypt(phone_cipher) if phone_cipher is not None else "",
            canonical_roles(roles),
            host_no or "",
            home or "",
            loc,
        ]
