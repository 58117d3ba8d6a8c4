"""Registry test fixtures: a migrated database (SQLite file or PostgreSQL) and CSV files."""

from __future__ import annotations

import asyncio
import csv
import io
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.settings import Settings
from campus.registry.exporter import export_rows
from campus.registry.formats import COLUMNS
from campus.registry.importer import import_file
from campus.registry.progress import Progress, no_progress
from campus.registry.report import ImportReport
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from tests.support import DATA_KEY, resident_id

TABLES = (
    "audit_log",
    "wechat_accounts",
    "unit_responsibles",
    "persons",
    "places",
    "units",
    "pass_keys",
)


@pytest.fixture(scope="session")
def registry_pg_url(postgres_server_url: str) -> Iterator[str]:
    """One migrated PostgreSQL database for the registry tests, emptied before each test."""
    import asyncpg

    server = urlsplit(postgres_server_url)
    admin = urlunsplit(server._replace(scheme="postgresql", path="/postgres"))
    name = f"hb_reg_{secrets.token_hex(6)}"
    url = urlunsplit(server._replace(path=f"/{name}"))

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def migrate() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(migrate())
        yield url
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/registry.db"
    return str(request.getfixturevalue("registry_pg_url"))


@dataclass
class Registry:
    """A migrated, empty database and helpers to import and export CSV files into it."""

    url: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    vault: DataVault
    folder: Path
    files: int = 0
    progress: Progress = field(default=no_progress)

    @property
    def settings(self) -> Settings:
        return Settings(_env_file=None, database_url=self.url, data_key=DATA_KEY)  # type: ignore[call-arg]

    def csv(self, kind: str, rows: Sequence[dict[str, str]], header: Sequence[str] = ()) -> Path:
        """A UTF-8 CSV file of `rows`; missing columns are empty."""
        columns = list(header or COLUMNS[kind])
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(c, "") for c in columns])
        return self.raw(out.getvalue().encode())

    def raw(self, data: bytes) -> Path:
        self.files += 1
        path = self.folder / f"file{self.files}.csv"
        path.write_bytes(data)
        return path

    async def load(
        self, kind: str, rows: Sequence[dict[str, str]] | Path, *, dry_run: bool = False
    ) -> ImportReport:
        path = rows if isinstance(rows, Path) else self.csv(kind, rows)
        return await import_file(
            self.sessions, self.vault, kind, path, dry_run=dry_run, progress=self.progress
        )

    async def export(self, kind: str) -> str:
        out = io.StringIO()
        await export_rows(self.sessions, self.vault, kind, out)
        return out.getvalue()

    async def count(self, table: str) -> int:
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(text(table)))).scalar_one()
            )

    async def all(self, sql: str, **params: Any) -> list[Any]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(text(sql), params)).all())

    async def campus(self) -> None:
        """Two units and three places, as most person tests need."""
        units = await self.load(
            "units",
            [
                {"code": "UNI", "name": "University"},
                {"code": "CS", "name": "Computer Science", "parent_code": "UNI"},
            ],
        )
        places = await self.load(
            "places",
            [
                {"code": "MAIN", "name": "Main campus", "kind": "campus"},
                {"code": "G1", "name": "Grid 1", "kind": "grid", "parent_code": "MAIN"},
                {"code": "H101", "name": "House 101", "kind": "house", "parent_code": "G1"},
            ],
        )
        assert units.ok and places.ok, units.errors + places.errors

    @staticmethod
    def person(n: int, **values: str) -> dict[str, str]:
        """A valid persons.csv row; person n has a resident ID and a phone of their own."""
        row = {
            "person_no": f"S{n:05d}",
            "name": f"学生{n}",
            "category": "student",
            "unit_code": "CS",
            "id_number": Registry.id_number(n),
            "phone": f"138{n:08d}",
            "roles": "",
            "responsible_no": "",
            "home_place_code": "",
            "locale": "",
        }
        row.update(values)
        return row

    @staticmethod
    def id_number(n: int) -> str:
        return resident_id(f"420101{19900101 + n // 1000:08d}{n % 1000:03d}")


@pytest.fixture
async def registry(registry_url: str, tmp_path: Path) -> AsyncIterator[Registry]:
    engine = create_engine(registry_url)
    if registry_url.startswith("sqlite"):
        await upgrade(engine)
    else:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    try:
        yield Registry(
            registry_url,
            engine,
            session_factory(engine),
            DataVault.from_setting(DATA_KEY),
            tmp_path,
        )
    finally:
        await engine.dispose()
