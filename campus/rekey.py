"""`healthbot keys rotate-data`: stored personal data re-encrypted under the first data key.

HEALTHBOT_DATA_KEY lists the keys, the new one first: the first encrypts, every one decrypts
(campus/secrets.py). Without this command, what was written under an older key stays under
it, and so that key can never leave the list. Here every ciphertext (ID numbers, phones, the
pass-code signing keys' private halves) is read, re-encrypted under the first key and written
back only if it did not change meanwhile, so the bot can keep running. A last pass counts what
the first key alone still cannot read.

The ID numbers' lookup hashes are keyed by the *last* key of the list, so that adding a key
does not change them. `rehash` re-keys them with the first key, for the step that leaves it
the only one: run it with the bot stopped, then start every process with that key alone (a
process still listing the old keys would compute hashes that no longer match).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus import audit
from campus.secrets import CannotDecrypt, DataVault
from storage.models import PassKey, Person

CHUNK = 500  # rows per transaction: SQLite holds its write lock (and the loop) while it writes


@dataclass
class RekeyReport:
    id_numbers: int = 0
    phones: int = 0
    signing_keys: int = 0
    rehashed: int = 0
    changed_meanwhile: int = 0  # rows left as they were: changed while this ran
    left_behind: int = 0  # values the first key alone still cannot read

    def summary(self) -> str:
        text = (
            f"re-encrypted under the first data key: {self.id_numbers} ID numbers, "
            f"{self.phones} phones, {self.signing_keys} signing keys"
        )
        if self.rehashed:
            text += f"; {self.rehashed} ID lookup hashes re-keyed with it"
        if self.changed_meanwhile:
            text += f"; {self.changed_meanwhile} rows changed meanwhile and were left"
        if self.left_behind:
            return text + (
                f"; {self.left_behind} values are still under older keys: run the command again"
            )
        return text + "; nothing is left under older keys"


def _unchanged(table: Table, key: str, columns: Sequence[str], nullable: Sequence[str]) -> Any:
    """`WHERE key = :pk AND column = :old_column …`, NULL-safe for the `nullable` columns."""
    terms = [table.c[key] == bindparam("pk")]
    for name in columns:
        column, old = table.c[name], bindparam(f"old_{name}", type_=table.c[name].type)
        terms.append(column == old if name not in nullable else column.is_not_distinct_from(old))
    return and_(*terms)


async def _pages(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Sequence[Any]]:
    """The persons' encrypted columns and hash, CHUNK rows at a time, each page in a short
    read of its own (by id, so rows written meanwhile do not shift the pages)."""
    last = 0
    while True:
        async with sessions() as session:
            rows = (
                await session.execute(
                    select(Person.id, Person.id_cipher, Person.phone_cipher, Person.id_hash)
                    .where(Person.id > last)
                    .order_by(Person.id)
                    .limit(CHUNK)
                )
            ).all()
        if not rows:
            return
        last = rows[-1].id
        yield rows


async def rotate_data(
    sessions: async_sessionmaker[AsyncSession],
    vault: DataVault,
    *,
    rehash_with: DataVault | None = None,
    first_key: DataVault,
) -> RekeyReport:
    """Re-encrypt everything under the first key of `vault`; `first_key` is a vault of that
    key alone (the check at the end), `rehash_with` the vault whose lookup hash to store."""
    report = RekeyReport()
    await _persons(sessions, vault, rehash_with, report)
    await _pass_keys(sessions, vault, report)
    report.left_behind = await _left_behind(sessions, first_key, rehashed=rehash_with is not None)
    async with sessions.begin() as session:
        audit.record(session, "cli", "rotate-data", None, report.summary()[:500])
    return report


async def _persons(
    sessions: async_sessionmaker[AsyncSession],
    vault: DataVault,
    rehash_with: DataVault | None,
    report: RekeyReport,
) -> None:
    table = Person.__table__
    assert isinstance(table, Table)
    columns = ["id_cipher", "phone_cipher", *(["id_hash"] if rehash_with else [])]
    stmt = (
        update(table)
        .where(_unchanged(table, "id", columns, nullable=["phone_cipher"]))
        .values({name: bindparam(f"new_{name}") for name in columns})
    )
    # Each page read, then written in a transaction of its own that starts with the writes:
    # the rows' old values in the WHERE clause catch what changed in between (an SQLite
    # transaction that read first could not take the write lock after another writer).
    async for rows in _pages(sessions):
        items = []
        for row in rows:
            item = {
                "pk": row.id,
                "old_id_cipher": row.id_cipher,
                "new_id_cipher": vault.rotate(row.id_cipher),
                "old_phone_cipher": row.phone_cipher,
                "new_phone_cipher": (
                    vault.rotate(row.phone_cipher) if row.phone_cipher is not None else None
                ),
            }
            if rehash_with is not None:
                item["old_id_hash"] = row.id_hash
                item["new_id_hash"] = rehash_with.lookup_hash(vault.decrypt(row.id_cipher), "id")
            items.append(item)
        async with sessions.begin() as session:
            for item in items:  # one by one: a row count per row, on every driver
                if (await session.execute(stmt, item)).rowcount:  # type: ignore[attr-defined]
                    report.id_numbers += 1
                    report.phones += item["old_phone_cipher"] is not None
                    report.rehashed += rehash_with is not None
                else:
                    report.changed_meanwhile += 1


async def _pass_keys(
    sessions: async_sessionmaker[AsyncSession], vault: DataVault, report: RekeyReport
) -> None:
    table = PassKey.__table__
    assert isinstance(table, Table)
    stmt = (
        update(table)
        .where(_unchanged(table, "kid", ["private_cipher"], nullable=[]))
        .values(private_cipher=bindparam("new_private_cipher"))
    )
    async with sessions() as session:
        keys = (await session.execute(select(PassKey.kid, PassKey.private_cipher))).all()
    items = [
        {"pk": kid, "old_private_cipher": cipher, "new_private_cipher": vault.rotate(cipher)}
        for kid, cipher in keys
    ]
    async with sessions.begin() as session:
        for item in items:
            done = int((await session.execute(stmt, item)).rowcount)  # type: ignore[attr-defined]
            report.signing_keys += done
            report.changed_meanwhile += 1 - done


async def _left_behind(
    sessions: async_sessionmaker[AsyncSession], first_key: DataVault, *, rehashed: bool
) -> int:
    """How many stored values the first key alone cannot decrypt; when `rehashed`, also the
    ID lookup hashes not keyed by it (a row changed meanwhile, a run cut short)."""
    count = 0

    def unreadable(token: bytes | None) -> bool:
        if token is None:
            return False
        try:
            first_key.decrypt(token)
        except CannotDecrypt:
            return True
        return False

    def unhashed(token: bytes, stored: str) -> bool:
        try:
            return first_key.lookup_hash(first_key.decrypt(token), "id") != stored
        except CannotDecrypt:
            return False  # counted as unreadable already

    async for rows in _pages(sessions):
        for row in rows:
            count += unreadable(row.id_cipher) + unreadable(row.phone_cipher)
            count += rehashed and unhashed(row.id_cipher, row.id_hash)
    async with sessions() as session:
        ciphers = (await session.execute(select(PassKey.private_cipher))).scalars().all()
    return count + sum(unreadable(cipher) for cipher in ciphers)
