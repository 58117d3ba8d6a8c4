"""`healthbot keys rotate-data`: personal data moved under the first data key, the bot still
running; with --rehash, the first key can then stand alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from campus.rekey import rotate_data
from campus.secrets import CannotDecrypt, DataVault
from storage.models import PassKey, Person
from tests.support import DATA_KEY

if TYPE_CHECKING:
    from conftest import Registry

NEW = "a-new-data-key"
ROTATING = DataVault.from_setting(f"{NEW},{DATA_KEY}")  # the list during the rotation
FIRST = DataVault.from_setting(NEW)  # the new key alone


async def _campus(registry: Registry) -> list[dict[str, str]]:
    """Three persons (the third without a phone) and a signing key, all under DATA_KEY."""
    await registry.campus()
    rows = [registry.person(1), registry.person(2), registry.person(3, phone="")]
    assert (await registry.load("persons", rows)).created == 3
    async with registry.sessions.begin() as session:
        session.add(
            PassKey(
                kid="0a0b0c0d",
                public_key=b"\x01" * 32,
                private_cipher=registry.vault.encrypt("the private half"),
            )
        )
    return rows


async def _stored(registry: Registry) -> dict[str, Any]:
    async with registry.sessions() as session:
        persons = (
            await session.execute(
                select(Person.person_no, Person.id_cipher, Person.phone_cipher, Person.id_hash)
            )
        ).all()
        key = (await session.execute(select(PassKey.private_cipher))).scalar_one()
    return {"persons": {row.person_no: row for row in persons}, "key": key}


async def test_everything_moves_under_the_first_key_and_the_hashes_stay(
    registry: Registry,
) -> None:
    rows = await _campus(registry)
    report = await rotate_data(registry.sessions, ROTATING, first_key=FIRST)
    assert report.summary() == (
        "re-encrypted under the first data key: 3 ID numbers, 2 phones, 1 signing keys; "
        "nothing is left under older keys"
    )
    stored = await _stored(registry)
    for row in rows:
        person = stored["persons"][row["person_no"]]
        assert FIRST.decrypt(person.id_cipher) == row["id_number"]
        phone = FIRST.decrypt(person.phone_cipher) if person.phone_cipher else ""
        assert phone == row["phone"]
        with pytest.raises(CannotDecrypt):
            registry.vault.decrypt(person.id_cipher)  # the old key alone no longer reads it
        # Still keyed by the last key of the list: processes listing NEW,OLD find them.
        assert person.id_hash == registry.vault.lookup_hash(row["id_number"], "id")
    assert FIRST.decrypt(stored["key"]) == "the private half"
    # A registry import under NEW,OLD sees nothing changed: the hashes still match.
    registry.vault = ROTATING
    again = await registry.load("persons", rows)
    assert (again.updated, again.unchanged) == (0, 3)
    audit = await registry.all("SELECT action, reason FROM audit_log WHERE action = 'rotate-data'")
    assert [tuple(a) for a in audit] == [("rotate-data", report.summary())]


async def test_rehashed_the_first_key_stands_alone(registry: Registry) -> None:
    rows = await _campus(registry)
    report = await rotate_data(registry.sessions, ROTATING, rehash_with=FIRST, first_key=FIRST)
    assert report.rehashed == 3 and report.left_behind == 0
    for row in rows:
        person = (await _stored(registry))["persons"][row["person_no"]]
        assert person.id_hash == FIRST.lookup_hash(row["id_number"], "id")
    # With the new key alone, the registry matches every person as it is.
    registry.vault = FIRST
    again = await registry.load("persons", rows)
    assert (again.updated, again.unchanged) == (0, 3)


class _Meddling:
    """The sessions, with a registry import changing S00002's phone just before the first
    write transaction: between the command's read and its write."""

    def __init__(self, registry: Registry) -> None:
        self.sessions: async_sessionmaker[AsyncSession] = registry.sessions
        self.vault = registry.vault
        self.done = False

    def __call__(self) -> AsyncSession:
        return self.sessions()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        if not self.done:
            self.done = True
            async with self.sessions.begin() as session:
                await session.execute(
                    update(Person)
                    .where(Person.person_no == "S00002")
                    .values(phone_cipher=self.vault.encrypt("13900000000"))
                )
        async with self.sessions.begin() as session:
            yield session


async def test_a_row_changed_meanwhile_keeps_its_change_and_a_second_run_finishes(
    registry: Registry,
) -> None:
    await _campus(registry)
    meddling = _Meddling(registry)
    first = await rotate_data(meddling, ROTATING, first_key=FIRST)  # type: ignore[arg-type]
    assert (first.id_numbers, first.changed_meanwhile, first.left_behind) == (2, 1, 2)
    assert first.summary().endswith("2 values are still under older keys: run the command again")
    phone = (await _stored(registry))["persons"]["S00002"].phone_cipher
    assert ROTATING.decrypt(phone) == "13900000000"  # the import's change, not overwritten
    second = await rotate_data(registry.sessions, ROTATING, first_key=FIRST)
    assert (second.id_numbers, second.changed_meanwhile, second.left_behind) == (3, 0, 0)
    assert FIRST.decrypt((await _stored(registry))["persons"]["S00002"].phone_cipher) == (
        "13900000000"
    )


def test_the_command_needs_the_new_key_listed_first(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    monkeypatch.setenv("HEALTHBOT_DATABASE_URL", registry.url)
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", DATA_KEY)
    refused = CliRunner().invoke(main, ["keys", "rotate-data"])
    assert refused.exit_code == 1
    assert "HEALTHBOT_DATA_KEY lists one key" in refused.output
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", f"{NEW},{DATA_KEY}")
    done = CliRunner().invoke(main, ["keys", "rotate-data", "--rehash"])
    assert done.exit_code == 0, done.output
    assert "re-encrypted under the first data key: 0 ID numbers" in done.output
    assert "start every process with HEALTHBOT_DATA_KEY set to that key alone" in done.output


async def test_a_rehash_cut_short_is_not_finished(registry: Registry) -> None:
    """A row changed during --rehash keeps the old key's hash: the run says it is not done
    (the CLI then exits with an error, not with "start with the new key alone")."""
    await _campus(registry)
    report = await rotate_data(
        _Meddling(registry),  # type: ignore[arg-type]
        ROTATING,
        rehash_with=FIRST,
        first_key=FIRST,
    )
    # S00002: its ID number and new phone still under the old key (its hash with them).
    assert (report.changed_meanwhile, report.left_behind) == (1, 2)
    again = await rotate_data(registry.sessions, ROTATING, rehash_with=FIRST, first_key=FIRST)
    assert again.left_behind == 0


async def test_data_no_listed_key_reads_stops_the_command_with_a_reason(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from bot.cli import main

    await _campus(registry)
    async with registry.sessions.begin() as session:
        await session.execute(
            update(Person)
            .where(Person.person_no == "S00003")
            .values(id_cipher=DataVault.from_setting("an unlisted key").encrypt("x"))
        )
    monkeypatch.setenv("HEALTHBOT_DATABASE_URL", registry.url)
    monkeypatch.setenv("HEALTHBOT_DATA_KEY", f"{NEW},{DATA_KEY}")
    # The command runs its own event loop: in a thread of its own, as from a shell.
    result = await asyncio.to_thread(CliRunner().invoke, main, ["keys", "rotate-data"])
    assert result.exit_code == 1
    assert "cannot be decrypted with any key of HEALTHBOT_DATA_KEY" in result.output
    assert "Traceback" not in result.output
