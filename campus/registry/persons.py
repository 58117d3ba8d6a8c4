"""Import of persons.csv: everyone on campus, with ID number and phone encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from campus.identity import mask_id_number
from campus.registry import fields, formats
from campus.registry.bulk import Advance, select_in, write_linked
from campus.registry.csvfile import Rows
from campus.registry.report import ImportReport
from campus.secrets import DataVault
from storage.models import Person, Place, Unit


@dataclass(slots=True)
class PersonRow:
    line: int
    person_no: str
    name: str
    category: str
    unit_id: int
    id_number: str
    id_hash: str
    phone: str | None
    roles: str
    responsible_no: str | None
    home_place_id: int | None
    # None keeps the language a person chose in chat (or zh_CN for someone new): registries
    # from HR systems don't know it and must not reset it every night.
    locale: str | None
    id_cipher: bytes = b""
    phone_cipher: bytes | None = None

    @property
    def key(self) -> str:
        return self.person_no

    @property
    def ref(self) -> str | None:
        return self.responsible_no


@dataclass
class PersonPlan:
    ids: dict[str, int] = field(default_factory=dict)
    creates: list[PersonRow] = field(default_factory=list)
    updates: list[tuple[int, PersonRow]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.creates) + len(self.updates)

    def encrypt(self, vault: DataVault) -> None:
        """Encrypt before the write starts, to keep SQLite's write lock short."""
        for row in (*self.creates, *(row for _, row in self.updates)):
            row.id_cipher = vault.encrypt(row.id_number)
            row.phone_cipher = vault.encrypt(row.phone) if row.phone else None

    async def write(self, session: AsyncSession, now: datetime, advance: Advance) -> None:
        await write_linked(
            session,
            Person,
            key="person_no",
            ref="responsible_id",
            creates=self.creates,
            updates=self.updates,
            values=_values,
            ids=self.ids,
            now=now,
            advance=advance,
            # valid_until and state belong to registration and expiry, not to the registry.
            on_create={"state": "active"},
        )


def _values(row: PersonRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "category": row.category,
        "unit_id": row.unit_id,
        "id_hash": row.id_hash,
        "id_cipher": row.id_cipher,
        "phone_cipher": row.phone_cipher,
        "roles": row.roles,
        "home_place_id": row.home_place_id,
        "locale": row.locale or formats.DEFAULT_LOCALE,
    }


@dataclass
class _FileIndex:
    """What the checks across rows need, for every row whose value parsed (bad rows too)."""

    line_of_no: dict[str, int] = field(default_factory=dict)
    line_of_hash: dict[str, tuple[int, str]] = field(default_factory=dict)  # -> (line, person_no)
    responsible_refs: list[tuple[int, str]] = field(default_factory=list)


async def prepare_persons(
    session: AsyncSession, vault: DataVault, rows: Rows, report: ImportReport
) -> PersonPlan:
    unit_ids: dict[str, int] = dict((await session.execute(select(Unit.code, Unit.id))).all())
    place_ids: dict[str, int] = dict((await session.execute(select(Place.code, Place.id))).all())
    index = _FileIndex()
    parsed: dict[str, PersonRow] = {}
    for line, row in report.rows_of(rows):
        person = _parse(fields.RowCheck(report, line, row), vault, unit_ids, place_ids, index)
        if person is not None:
            parsed[person.person_no] = person

    plan = PersonPlan()
    await _check_id_holders(session, index, report)
    await _resolve_responsibles(session, index, report, plan.ids)
    if not report.ok:
        return plan
    await _diff(session, vault, parsed, report, plan)
    return plan


def _parse(
    check: fields.RowCheck,
    vault: DataVault,
    unit_ids: dict[str, int],
    place_ids: dict[str, int],
    index: _FileIndex,
) -> PersonRow | None:
    line = check.line
    person_no = check("person_no", fields.person_no)
    name = check("name", fields.name)
    category = check("category", fields.category)
    unit_code = check("unit_code", fields.code)
    id_number = check("id_number", fields.id_number)
    phone = check("phone", fields.phone)
    roles = check("roles", fields.roles)
    responsible_no = check("responsible_no", fields.optional_person_no)
    home_place_code = check("home_place_code", fields.optional_code)
    locale = check("locale", fields.locale)

    unit_id = unit_ids.get(unit_code) if unit_code is not None else None
    if unit_code is not None and unit_id is None:
        check.bad("unit_code", f"unknown unit {unit_code!r} (import units.csv first)")
    home_place_id = place_ids.get(home_place_code) if home_place_code is not None else None
    if home_place_code is not None and home_place_id is None:
        check.bad("home_place_code", f"unknown place {home_place_code!r} (import places.csv first)")
    if person_no is not None:
        if person_no in index.line_of_no:
            check.bad("person_no", f"{person_no!r} is also on line {index.line_of_no[person_no]}")
            person_no = None  # the first row of a person number is the one checked further
        else:
            index.line_of_no[person_no] = line
    id_hash = vault.lookup_hash(id_number, "id") if id_number is not None else None
    if id_hash is not None and id_number is not None:
        if id_hash in index.line_of_hash:
            first = index.line_of_hash[id_hash][0]
            check.bad("id_number", f"{mask_id_number(id_number)!r} is also on line {first}")
        elif person_no is not None:
            index.line_of_hash[id_hash] = (line, person_no)
    if responsible_no is not None:
        if responsible_no == person_no:
            check.bad("responsible_no", f"{responsible_no!r} is the person themself")
        else:
            index.responsible_refs.append((line, responsible_no))

    if not check.ok:
        return None
    assert person_no is not None and name is not None and category is not None
    assert unit_id is not None and id_number is not None and id_hash is not None
    assert roles is not None
    return PersonRow(
        line,
        person_no,
        name,
        category,
        unit_id,
        id_number,
        id_hash,
        phone,
        roles,
        responsible_no,
        home_place_id,
        locale,
    )


async def _check_id_holders(session: AsyncSession, index: _FileIndex, report: ImportReport) -> None:
    """An ID number held in the database by someone the file does not mention is a conflict."""
    stmt = select(Person.id_hash, Person.person_no)
    async for id_hash, holder in select_in(session, stmt, Person.id_hash, index.line_of_hash):
        line, person_no = index.line_of_hash[id_hash]
        if holder != person_no and holder not in index.line_of_no:
            # The operator may see whose record it is; the ID number itself stays masked.
            report.add(line, "id_number", f"already belongs to person_no {holder!r}")


async def _resolve_responsibles(
    session: AsyncSession, index: _FileIndex, report: ImportReport, ids: dict[str, int]
) -> None:
    outside = {no for _, no in index.responsible_refs if no not in index.line_of_no}
    stmt = select(Person.person_no, Person.id)
    async for person_no, person_id in select_in(session, stmt, Person.person_no, outside):
        ids[person_no] = person_id
    for line, no in index.responsible_refs:
        if no not in index.line_of_no and no not in ids:
            report.add(line, "responsible_no", f"unknown person {no!r}")


async def _diff(
    session: AsyncSession,
    vault: DataVault,
    parsed: dict[str, PersonRow],
    report: ImportReport,
    plan: PersonPlan,
) -> None:
    host = aliased(Person)
    stmt = select(
        Person.id,
        Person.person_no,
        Person.name,
        Person.category,
        Person.unit_id,
        Person.id_hash,
        Person.phone_cipher,
        Person.roles,
        host.person_no,
        Person.home_place_id,
        Person.locale,
    ).outerjoin(host, host.id == Person.responsible_id)
    async for stored in select_in(session, stmt, Person.person_no, parsed):
        person_id, person_no, *values, phone_cipher, roles, host_no, home_id, locale = stored
        row = parsed.pop(person_no)
        plan.ids[person_no] = person_id
        if row.locale is None:
            row.locale = locale
        # Ciphertexts differ on every encryption, so the plaintext and the hash are compared.
        phone = vault.decrypt(phone_cipher) if phone_cipher is not None else None
        same = (
            values == [row.name, row.category, row.unit_id, row.id_hash]
            and phone == row.phone
            and fields.canonical_roles(roles) == row.roles
            and (host_no, home_id, locale) == (row.responsible_no, row.home_place_id, row.locale)
        )
        if same:
            report.unchanged += 1
        else:
            plan.updates.append((person_id, row))
    plan.creates = sorted(parsed.values(), key=lambda row: row.line)
    report.created, report.updated = len(plan.creates), len(plan.updates)
