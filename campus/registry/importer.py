"""`healthbot import`: validate a whole registry file, then upsert it in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.keyspace import Keyspace
from bot.kv import RedisKV
from bot.settings import Settings
from campus import audit
from campus.access.policies import parse_policies
from campus.accounts import PROFILE_TTL, drop_principals_of
from campus.meals.menus import MenuPlan, prepare_menus
from campus.registry.csvfile import CsvError, Rows, read_rows
from campus.registry.database import DatabaseNotReady, open_database
from campus.registry.formats import COLUMNS, KNOWN_POLICIES
from campus.registry.persons import PersonPlan, prepare_persons
from campus.registry.places import PlacePlan, prepare_places
from campus.registry.progress import Progress, default_progress, no_progress
from campus.registry.report import ImportReport
from campus.registry.units import UnitPlan, prepare_units
from campus.returns.batches import BatchPlan, prepare_batches
from campus.rules import RulesError, load_rules
from campus.secrets import CannotDecrypt, DataVault

log = logging.getLogger(__name__)


async def run_import(settings: Settings, kind: str, path: Path, *, dry_run: bool) -> ImportReport:
    """The CLI's entry: import `path` as registry `kind` into the configured database."""
    if kind not in COLUMNS:
        return _unavailable(kind, dry_run)
    vault = DataVault.from_setting(settings.data_key)
    try:
        policies = policy_names(settings.rules_file) if kind == "places" else KNOWN_POLICIES
        async with open_database(settings) as sessions:
            report = await import_file(
                sessions,
                vault,
                kind,
                path,
                dry_run=dry_run,
                progress=default_progress(),
                policies=policies,
            )
            if report.changed_persons:
                await _drop_cached_principals(settings, sessions, report.changed_persons)
            return report
    except (DatabaseNotReady, RulesError) as exc:
        report = ImportReport(kind, dry_run=dry_run)
        report.fail(str(exc))
        return report


async def _drop_cached_principals(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], person_ids: list[int]
) -> None:
    """A role, unit or name the import changed takes effect with the next message, not once
    the cached principal expires. The import is committed: a failure here only warns."""
    if not settings.redis_url:
        return  # state in memory: a running server's own, out of reach (and gone in 5 minutes)
    kv: RedisKV | None = None
    try:
        kv = RedisKV.from_url(settings.redis_url)
        dropped = await drop_principals_of(
            kv, Keyspace(settings.wechat_appid), sessions, person_ids
        )
        log.info("dropped %d cached principals of changed persons", dropped)
    except Exception as exc:
        log.warning(
            "could not drop the cached principals of the changed persons (%s); "
            "they expire within %d minutes",
            type(exc).__name__,
            int(PROFILE_TTL // 60),
        )
    finally:
        if kv is not None:
            await kv.close()


def policy_names(rules_file: str | None) -> frozenset[str]:
    """The access policies places.csv may name: those of the rules file (raises RulesError)."""
    rules = load_rules(rules_file)
    return frozenset(parse_policies(rules.sections.get("policies"), rules.source).by_name)


async def import_file(
    sessions: async_sessionmaker[AsyncSession],
    vault: DataVault,
    kind: str,
    path: Path,
    *,
    dry_run: bool = False,
    progress: Progress = no_progress,
    policies: Collection[str] = KNOWN_POLICIES,
) -> ImportReport:
    columns = COLUMNS.get(kind, ())
    return await import_rows(
        sessions,
        vault,
        kind,
        read_rows(path, columns),
        dry_run=dry_run,
        progress=progress,
        policies=policies,
    )


async def import_rows(
    sessions: async_sessionmaker[AsyncSession],
    vault: DataVault,
    kind: str,
    rows: Rows,
    *,
    dry_run: bool = False,
    progress: Progress = no_progress,
    policies: Collection[str] = KNOWN_POLICIES,
) -> ImportReport:
    """Check every row, then write all of them or, if any is bad, none.

    `rows` are (line number, {column: value}) pairs; the values are stripped strings.
    `policies` are the access policy names places may carry.
    """
    if kind not in COLUMNS:
        return _unavailable(kind, dry_run)
    report = ImportReport(kind, dry_run=dry_run)
    async with sessions() as session:
        try:
            plan = await _prepare(session, vault, kind, rows, report, policies)
        except CsvError as exc:
            report.add(exc.line, None, exc.reason)
            return report
        except CannotDecrypt:
            report.fail("stored personal data cannot be decrypted with HEALTHBOT_DATA_KEY")
            return report
        if not report.ok or dry_run:
            return report
        if isinstance(plan, PersonPlan):
            plan.encrypt(vault)
        try:
            with progress(f"writing {kind}", plan.total) as advance:
                await plan.write(session, datetime.now(UTC), advance)
            audit.record(
                session,
                "cli",
                "import",
                None,
                f"{kind}: {report.created} created, {report.updated} updated",
            )
            await session.commit()
            if isinstance(plan, PersonPlan):
                report.changed_persons = [person_id for person_id, _ in plan.updates]
        except IntegrityError as exc:
            # Something else wrote the same rows while this import was being checked.
            log.warning("import of %s rolled back: %s", kind, type(exc.orig).__name__)
            report.fail("the database changed during the import; nothing was written, run it again")
            return report
    log.info("import %s", report.summary())
    return report


async def _prepare(
    session: AsyncSession,
    vault: DataVault,
    kind: str,
    rows: Rows,
    report: ImportReport,
    policies: Collection[str],
) -> UnitPlan | PlacePlan | PersonPlan | MenuPlan | BatchPlan:
    if kind == "menus":
        return await prepare_menus(session, rows, report)
    if kind == "batches":
        return await prepare_batches(session, rows, report)
    if kind == "units":
        return await prepare_units(session, rows, report)
    if kind == "places":
        return await prepare_places(session, rows, report, policies)
    return await prepare_persons(session, vault, rows, report)


def _unavailable(kind: str, dry_run: bool) -> ImportReport:
    report = ImportReport(kind, dry_run=dry_run)
    report.fail(f"unknown registry {kind!r} (one of {', '.join(COLUMNS)})")
    return report
