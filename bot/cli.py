"""The `healthbot` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import click
from aiohttp import web
from pydantic import ValidationError

from bot.settings import Settings


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"HEALTHBOT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise click.ClickException(f"bad settings: {problems}") from None


def _logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """Healthy Campus Bot."""
    _logging(verbose)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--no-scheduler", is_flag=True, help="Do not run scheduled jobs in this process.")
def serve(host: str, port: int, no_scheduler: bool) -> None:
    """Run the production server: /wechat, /healthz, /metrics."""
    from bot.app import create_app

    settings = _settings()
    web.run_app(create_app(settings), host=host, port=port, print=_announce(host, port))


def _announce(host: str, port: int) -> Callable[[str], None]:
    def say(_: str) -> None:
        click.echo(f"Healthy Campus Bot on http://{host}:{port}/wechat (Ctrl-C to stop)")

    return say


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply Alembic migrations to HEALTHBOT_DATABASE_URL."""
    from storage.engine import create_engine
    from storage.migrate import upgrade

    settings = _settings()

    async def run() -> None:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine, revision)
        finally:
            await engine.dispose()

    asyncio.run(run())
    click.echo("database is up to date")


@main.command("import")
@click.argument("kind", type=click.Choice(["units", "persons", "places", "batches", "menus"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and report; write nothing.")
def import_(kind: str, file: Path, dry_run: bool) -> None:
    """Upsert a registry CSV: every bad row is reported and a bad file writes nothing."""
    from campus.registry.importer import run_import

    settings = _settings()
    report = asyncio.run(run_import(settings, kind, file, dry_run=dry_run))
    for line in report.errors:
        click.echo(line, err=True)
    click.echo(report.summary())
    if report.errors:
        sys.exit(1)


@main.command("export")
@click.argument("kind", type=click.Choice(["persons", "units", "places"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def export(kind: str, output: Path | None) -> None:
    """Write a registry back in its CSV format (stdout, or -o FILE)."""
    from campus.registry.exporter import run_export

    settings = _settings()
    if output is None:
        asyncio.run(run_export(settings, kind, sys.stdout))
        return
    with output.open("w", encoding="utf-8", newline="") as fp:
        asyncio.run(run_export(settings, kind, fp))
