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
    # The access log carries query strings (WeChat puts the openid there): personal data.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
    problems = settings.production_problems()
    if problems and not settings.allow_insecure_defaults:
        raise click.ClickException(
            "refusing to serve with demo defaults: "
            + "; ".join(problems)
            + " (set them, or HEALTHBOT_ALLOW_INSECURE_DEFAULTS=1 for a local trial)"
        )
    web.run_app(create_app(settings), host=host, port=port, print=_announce(host, port))


def _announce(host: str, port: int) -> Callable[[str], None]:
    def say(_: str) -> None:
        click.echo(f"Healthy Campus Bot on http://{host}:{port}/wechat (Ctrl-C to stop)")

    return say


@main.command()
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data",
    "data_dir",
    default="demo-data",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the demo keeps its files.",
)
@click.option("--fresh", is_flag=True, help="Start over with a newly seeded campus.")
@click.option("--safe-mode", is_flag=True, help="Encrypt callbacks (AES), as WeChat's safe mode.")
def demo(port: int, data_dir: Path, fresh: bool, safe_mode: bool) -> None:
    """Everything on one machine: the bot, an emulated WeChat and a demo campus."""
    from bot.demo import create_demo_app, demo_settings, prepare_data_dir

    prepare_data_dir(data_dir, fresh=fresh)
    settings = demo_settings(port, data_dir, safe_mode=safe_mode)

    def say(_: str) -> None:
        click.echo(f"Healthy Campus demo: open http://127.0.0.1:{port}/sim/ (Ctrl-C to stop)")

    web.run_app(create_demo_app(settings, port), host="127.0.0.1", port=port, print=say)


@main.group()
def menu() -> None:
    """The custom menu."""


@menu.command("sync")
def menu_sync() -> None:
    """Create the custom menu of DESIGN.md through the WeChat API."""
    import aiohttp

    from bot.keyspace import Keyspace
    from bot.kv import MemoryKV, RedisKV
    from bot.menu import sync
    from bot.wechat.api import WeChatAPI
    from bot.wechat.token import AccessTokenManager

    settings = _settings()

    async def run() -> None:
        kv = RedisKV.from_url(settings.redis_url) if settings.redis_url else MemoryKV()
        async with aiohttp.ClientSession() as http:
            tokens = AccessTokenManager(http, settings, kv, Keyspace(settings.wechat_appid))
            await sync(WeChatAPI(http, settings, tokens))
        await kv.close()

    asyncio.run(run())
    click.echo("menu created")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="heads", show_default=True)
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
