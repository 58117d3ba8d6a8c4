"""The database of a CLI run: engine from settings, schema ready, disposed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade


class DatabaseNotReady(Exception):
    """The database cannot be reached or has no registry tables; the message says which."""


def _has_registry(conn: Connection) -> bool:
    return inspect(conn).has_table("persons")


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(settings.database_url)
    try:
        try:
            if settings.is_sqlite:
                await upgrade(engine)  # as `serve` and `demo` do
            async with engine.connect() as conn:
                ready = await conn.run_sync(_has_registry)
        except (OSError, DBAPIError) as exc:
            # The class name only: the driver's message may carry the URL and its password.
            raise DatabaseNotReady(
                f"cannot use the database in HEALTHBOT_DATABASE_URL ({type(exc).__name__})"
            ) from None
        if not ready:
            raise DatabaseNotReady(
                "the database has no registry tables: run `healthbot db upgrade`"
            )
        yield session_factory(engine)
    finally:
        await engine.dispose()
