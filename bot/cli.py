"""The `healthbot` command line."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from aiohttp import web
from pydantic import ValidationError

from bot.loop import new_loop
from bot.settings import Settings

if TYPE_CHECKING:
    from campus.health.services import HealthKit
    from campus.tracing.services import TracingKit

T = TypeVar("T")


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"HEALTHBOT_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            if e["loc"]
            else str(e["msg"]).removeprefix("Value error, ")  # a rule across settings
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
    from bot.wechat import callback

    settings = _settings()
    problems = settings.production_problems()
    if problems and not settings.allow_insecure_defaults:
        raise click.ClickException(
            "refusing to serve with demo defaults: "
            + "; ".join(problems)
            + " (set them, or HEALTHBOT_ALLOW_INSECURE_DEFAULTS=1 for a local trial)"
        )
    app = create_app(settings, scheduler=not no_scheduler)
    app.on_startup.append(_settle_memory)
    web.run_app(
        app,
        host=host,
        port=port,
        print=_announce(host, port),
        loop=_loop(settings),
        handler_cancellation=callback.HANDLER_CANCELLATION,
    )


def _loop(settings: Settings) -> asyncio.AbstractEventLoop:
    try:
        return new_loop(settings.event_loop)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None


async def _settle_memory(app: web.Application) -> None:
    """Keep the garbage collector's pauses out of the reply latency.

    Everything loaded at start-up (modules, catalogs, rules, keys) lives as long as the
    process: freezing it keeps full collections from walking it again and again, and a
    larger first generation makes collections rarer under a steady stream of messages.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


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
    from bot.wechat import callback

    prepare_data_dir(data_dir, fresh=fresh)
    settings = demo_settings(port, data_dir, safe_mode=safe_mode)

    def say(_: str) -> None:
        click.echo(f"Healthy Campus demo: open http://127.0.0.1:{port}/sim/ (Ctrl-C to stop)")

    app = create_demo_app(settings, port)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        print=say,
        loop=_loop(settings),
        handler_cancellation=callback.HANDLER_CANCELLATION,
    )


@main.group()
def menu() -> None:
    """The custom menu."""


@menu.command("sync")
def menu_sync() -> None:
    """Create the custom menu of DESIGN.md, and the guards' menu with the VERIFY scanner.

    Bound guards get the guard tag now; guards who bind later get it when they go on duty.
    """
    from bot.access_admin import sync_menu
    from bot.wechat.errors import WeChatError

    settings = _settings()
    try:
        done = asyncio.run(sync_menu(settings))
    except WeChatError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"menu created; guards' menu added, {done.tagged} guard(s) tagged, "
        f"{done.untagged} no longer guards untagged"
    )


@main.command("poster")
@click.argument("place_code")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The PNG file to write.",
)
def poster(place_code: str, output: Path) -> None:
    """Create PLACE_CODE's WeChat QR code (scene place:CODE) and render its printable poster."""
    from bot.access_admin import make_poster
    from bot.wechat.errors import WeChatError
    from campus.access.posters import UnknownPlace

    settings = _settings()
    try:
        made = asyncio.run(make_poster(settings, place_code, output))
    except (UnknownPlace, ValueError, WeChatError) as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    click.echo(f"{output}: poster for {made.place_name} ({made.scene}, {made.size} bytes)")


@main.group()
def keys() -> None:
    """The Ed25519 keys that sign pass codes, and the data key's rotation."""


@keys.command("rotate")
def keys_rotate() -> None:
    """Sign new codes with a new key; older keys verify until their last codes expire."""
    from bot.access_admin import rotate_keys

    settings = _settings()
    new, ring = asyncio.run(rotate_keys(settings))
    click.echo(f"new signing key {new.kid}")
    for key in ring:
        if key.kid != new.kid and key.verify_until is not None:
            click.echo(f"key {key.kid} verifies codes until {key.verify_until:%Y-%m-%d %H:%M} UTC")


@keys.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
def keys_export(output: Path | None) -> None:
    """Write the public keys as a JWKS (JSON), for gate devices that verify offline."""
    import json

    from bot.access_admin import export_jwks

    settings = _settings()
    text = json.dumps(asyncio.run(export_jwks(settings)), indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


@keys.command("rotate-data")
@click.option(
    "--rehash",
    is_flag=True,
    help="Also key the ID lookup hashes with the first key; with the bot stopped, before "
    "HEALTHBOT_DATA_KEY is set to the first key alone.",
)
def keys_rotate_data(rehash: bool) -> None:
    """Re-encrypt stored personal data under the first key of HEALTHBOT_DATA_KEY."""
    from campus.registry.database import DatabaseNotReady, open_database
    from campus.rekey import RekeyReport, rotate_data
    from campus.secrets import CannotDecrypt, DataVault

    settings = _settings()
    listed = [key.strip() for key in settings.data_key.split(",") if key.strip()]
    if len(listed) < 2:
        raise click.ClickException(
            "HEALTHBOT_DATA_KEY lists one key: list the new key first and the old ones after "
            "it (NEW,OLD), then run this"
        )
    vault, first = DataVault.from_setting(settings.data_key), DataVault.from_setting(listed[0])

    async def run() -> RekeyReport:
        async with open_database(settings) as sessions:
            return await rotate_data(
                sessions, vault, rehash_with=first if rehash else None, first_key=first
            )

    try:
        report = asyncio.run(run())
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from None
    except CannotDecrypt:
        raise click.ClickException(
            "some stored data cannot be decrypted with any key of HEALTHBOT_DATA_KEY; the "
            "rows before its batch of 500 are re-encrypted, that batch and the rest are not"
        ) from None
    click.echo(report.summary())
    if report.left_behind:
        raise click.ClickException("not finished: run the command again")
    if rehash:
        click.echo(
            "ID lookup hashes now use the first key: start every process with "
            "HEALTHBOT_DATA_KEY set to that key alone"
        )


@keys.command("list")
def keys_list() -> None:
    """Every key: when it was made, rotated out, and until when it verifies."""
    from bot.access_admin import list_keys

    settings = _settings()
    for key in asyncio.run(list_keys(settings)):
        retired = f"{key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "signing"
        until = f"{key.verify_until:%Y-%m-%d %H:%M}" if key.verify_until else "-"
        click.echo(f"{key.kid}  created {key.created_at:%Y-%m-%d %H:%M}  {retired:<16}  {until}")


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


@main.group(invoke_without_command=True)
@click.option("--unit", "unit_code", default=None, help="One unit (code) and its sub-units.")
@click.pass_context
def stats(ctx: click.Context, unit_code: str | None) -> None:
    """Figures for a terminal; alone, the dashboard's headline figures."""
    if ctx.invoked_subcommand is None:
        click.echo(_dashboard_text(unit_code))


def _dashboard_text(unit_code: str | None) -> str:
    from bot.clock import SystemClock
    from campus.dashboard import text
    from campus.dashboard.service import DashboardRefused, DashboardService
    from campus.links import LinkSigner
    from storage.engine import create_engine, session_factory

    settings = _settings()

    async def run() -> str:
        engine = create_engine(settings.database_url)
        try:
            service = DashboardService(
                session_factory(engine),
                LinkSigner(settings.data_key),
                SystemClock(),
                settings.tz,
                settings.public_url,
            )
            return text.render(await service.overview(unit_code))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except DashboardRefused:
        raise click.ClickException(f"unknown unit {unit_code!r}") from None


@stats.command("registry")
def stats_registry() -> None:
    """Coverage per grid and per unit: houses registered, persons registered and bound."""
    from campus.registry import coverage
    from storage.engine import create_engine, session_factory

    settings = _settings()

    async def run() -> str:
        engine = create_engine(settings.database_url)
        try:
            sessions = session_factory(engine)
            return coverage.render(
                await coverage.grid_coverage(sessions), await coverage.unit_coverage(sessions)
            )
        finally:
            await engine.dispose()

    click.echo(asyncio.run(run()))


@stats.command("returns")
def stats_returns() -> None:
    """Each return batch: window, quota, applied, pending, approved, rejected, arrived."""
    from datetime import UTC
    from datetime import datetime as dt

    from campus.returns.stats import batch_progress, render
    from storage.engine import create_engine, session_factory

    settings = _settings()
    today = dt.now(UTC).astimezone(settings.tz).date()

    async def run() -> str:
        engine = create_engine(settings.database_url)
        try:
            async with session_factory(engine)() as session:
                return render(await batch_progress(session, unit_ids=None, today=today), today)
        finally:
            await engine.dispose()

    click.echo(asyncio.run(run()))


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
@click.argument("kind", type=click.Choice(["persons", "units", "places", "menus", "orders"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="orders: the meals' day (YYYY-MM-DD).",
)
@click.option("--canteen", default=None, help="orders: only this canteen's (place code).")
def export(kind: str, output: Path | None, day: datetime | None, canteen: str | None) -> None:
    """Write a registry back in its CSV format, or a day's meal orders (stdout, or -o FILE)."""
    from campus.registry.exporter import run_export

    settings = _settings()
    if kind == "orders":
        from campus.meals.export import run_export_orders

        if day is None:
            raise click.UsageError("export orders needs --date YYYY-MM-DD")
        text = asyncio.run(run_export_orders(settings, day.date(), canteen))
        if output is None:
            click.echo(text, nl=False)
        else:
            output.write_text(text, encoding="utf-8")
        return
    if day is not None or canteen is not None:
        raise click.UsageError("--date and --canteen are for export orders")
    if output is None:
        asyncio.run(run_export(settings, kind, sys.stdout))
        return
    with output.open("w", encoding="utf-8", newline="") as fp:
        asyncio.run(run_export(settings, kind, fp))


@main.command("scheduler")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Serve /healthz and /metrics (Prometheus) on this port; nothing else is served.",
)
def scheduler_(host: str, port: int | None) -> None:
    """Run the cron jobs (when leader) and the outbox dispatcher, without the web server."""
    from bot.app import create_app

    settings = _settings()

    async def run() -> None:
        import signal

        app = create_app(settings, scheduler=True, callback=False)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()  # the app's resources, the scheduler among them
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            if port is not None:
                await web.TCPSite(runner, host, port).start()
                click.echo(f"Health and metrics on http://{host}:{port}/healthz and /metrics")
            click.echo("Healthy Campus scheduler running (Ctrl-C to stop)")
            await stop.wait()
        finally:
            await runner.cleanup()

    loop = _loop(settings)
    with asyncio.Runner(loop_factory=lambda: loop) as main_loop:
        main_loop.run(run())


@main.group()
def jobs() -> None:
    """The scheduler's jobs: list them, or run one now."""


@jobs.command("list")
def jobs_list() -> None:
    """Every job, its schedule from the rules file, and what it does."""
    from campus.rules import RulesError, load_rules
    from scheduler.jobs import JOBS

    settings = _settings()
    try:
        rules = load_rules(settings.rules_file)
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None
    for name, job in sorted(JOBS.items()):
        entry = rules.scheduled(name)
        if entry is None:
            when = "not scheduled"
        else:
            when = entry.cron + ("" if entry.enabled else " (disabled)")
        click.echo(f"{name:<28} {when:<20} {job.description}")


@jobs.command("run")
@click.argument("name")
def jobs_run(name: str) -> None:
    """Run job NAME once, now (what it pushes goes through the outbox)."""
    from campus.rules import RulesError
    from scheduler.jobs import UnknownJob
    from scheduler.runner import run_once

    settings = _settings()
    try:
        summary = asyncio.run(run_once(settings, name))
    except (UnknownJob, RulesError) as exc:
        raise click.ClickException(str(exc.args[0] if exc.args else exc)) from None
    click.echo(f"{name}: {summary}")


@main.command()
@click.option("--unit", "unit_code", required=True, help="The unit's code.")
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="Only persons of this category (repeat for several).",
)
@click.option("--include-subunits", is_flag=True, help="Also everyone in the unit's sub-units.")
@click.option("--urgent", is_flag=True, help="Send during quiet hours too.")
@click.option(
    "--id",
    "broadcast_id",
    default=None,
    help="Broadcast id; running again with the same id reaches nobody twice.",
)
@click.argument("text")
def broadcast(
    unit_code: str,
    categories: tuple[str, ...],
    include_subunits: bool,
    urgent: bool,
    broadcast_id: str | None,
    text: str,
) -> None:
    """Queue TEXT for everyone in a unit; the dispatcher sends it."""
    from campus.broadcast import BroadcastRefused, run_broadcast

    settings = _settings()
    try:
        result = asyncio.run(
            run_broadcast(
                settings,
                unit_code=unit_code,
                text=text,
                categories=categories,
                include_subunits=include_subunits,
                urgent=urgent,
                broadcast_id=broadcast_id,
            )
        )
    except BroadcastRefused as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"broadcast {result.broadcast_id} to {result.unit_code} ({result.unit_name}): "
        f"{result.recipients} recipients, {result.queued} queued now, "
        f"{result.unbound} without WeChat (recorded as failed: unbound)"
    )


@main.group("status")
def status_() -> None:
    """Health status: show it, set it (a health officer's override), recompute it."""


def _health(work: Callable[[HealthKit], Awaitable[T]]) -> T:
    from campus.health.services import standalone

    return _with_kit(standalone, work)


def _with_kit(standalone: Callable[..., Any], work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work` with a feature's standalone kit (its services on the configured database);
    a bad rules file is a clear error, not a traceback."""
    from campus.health.services import Words
    from campus.rules import RulesError
    from handlers import keywords as kw

    settings = _settings()

    async def run() -> T:
        words = Words(checkin=kw.CHECKIN, ack=kw.ACK, set_status=kw.SET_STATUS)
        async with standalone(settings, words) as kit:
            return await work(kit)

    try:
        return asyncio.run(run())
    except RulesError as exc:
        raise click.ClickException(str(exc)) from None


@status_.command("set")
@click.argument("person_no")
@click.argument("colour", type=click.Choice(["green", "yellow", "red"], case_sensitive=False))
@click.argument("reason", nargs=-1, required=True)
@click.option("--by", "actor", default="cli", show_default=True, help="Who decided (audit).")
def status_set(person_no: str, colour: str, reason: tuple[str, ...], actor: str) -> None:
    """Set PERSON_NO's status to COLOUR because of REASON (audited; the person is told).

    This is also the health officer's clearance a red status needs to turn green.
    """
    from campus.health.model import Status
    from campus.health.status import OverrideOutcome

    note = " ".join(reason).strip()
    if not note:
        raise click.ClickException("a reason is required")
    result = _health(
        lambda kit: kit.status.override(
            person_no, Status(colour.lower()), note, actor=f"cli:{actor}"[:100]
        )
    )
    if result.outcome is OverrideOutcome.UNKNOWN_PERSON:
        raise click.ClickException(f"no person with number {person_no!r}")
    click.echo(f"{result.person_no}: {result.before.value} -> {result.after.value}")


@status_.command("show")
@click.argument("person_no")
@click.option("--limit", default=10, show_default=True, help="Status changes to list.")
def status_show(person_no: str, limit: int) -> None:
    """PERSON_NO's status, its reasons, and the latest changes (with their rule version)."""
    from bot.i18n import translator
    from campus.health import explain

    async def show(kit: HealthKit) -> list[str] | None:
        recomputed = await kit.status.recompute(person_no)
        if recomputed is None:
            return None
        _ = translator("en")
        lines = [f"{person_no}: {recomputed.stored.status.value}"]
        lines += [
            f"  {explain.reason_text(r, kit.rules, _, 'en')}" for r in recomputed.stored.reasons
        ]
        for change in await kit.status.history(person_no, limit, actor="cli"):
            lines.append(
                f"  {change.at:%Y-%m-%d %H:%M} {change.from_status} -> {change.to_status} "
                f"({change.cause}, {change.actor}, rules {change.rule_version})"
            )
        return lines

    lines = _health(show)
    if lines is None:
        raise click.ClickException(f"no person with number {person_no!r}")
    for line in lines:
        click.echo(line)


@status_.command("recompute")
@click.argument("person_no")
def status_recompute(person_no: str) -> None:
    """Recompute PERSON_NO's status from the stored reports, overrides and missed days.

    Exits 1 when the stored status differs from the recomputed one.
    """
    result = _health(lambda kit: kit.status.recompute(person_no))
    if result is None:
        raise click.ClickException(f"no person with number {person_no!r}")
    stored, computed = result.stored, result.computed
    click.echo(f"stored:     {stored.status.value} {sorted(r.rule for r in stored.reasons)}")
    click.echo(f"recomputed: {computed.status.value} {sorted(r.rule for r in computed.reasons)}")
    if not result.agrees:
        sys.exit(1)


# -- tracing and incidents (issue 10) ---------------------------------------------------------


def _tracing(work: Callable[[TracingKit], Awaitable[T]]) -> T:
    from campus.tracing.services import standalone

    return _with_kit(standalone, work)


@main.command("trace")
@click.argument("person_no")
@click.option("--days", type=click.IntRange(1, 365), default=None, help="Default: rules file.")
@click.option("--margin", type=click.IntRange(0, 1440), default=None, help="Minutes.")
@click.option("--subtree/--same-place", default=None, help="Match the whole building.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--by", "actor", default="cli", show_default=True, help="Who asked (audit).")
def trace(
    person_no: str,
    days: int | None,
    margin: int | None,
    subtree: bool | None,
    csv_file: Path | None,
    actor: str,
) -> None:
    """Everyone who shared a place with PERSON_NO, most exposed first (the read is audited).

    --csv writes every encounter (full names) to FILE; the terminal gets the ranked list.
    """
    from campus.tracing.service import TraceRefused, write_csv

    result = _tracing(
        lambda kit: kit.tracing.run(
            person_no, actor=f"cli:{actor}"[:100], days=days, margin=margin, subtree=subtree
        )
    )
    if result is TraceRefused.UNKNOWN_PERSON:
        raise click.ClickException(f"no person with number {person_no!r}")
    if isinstance(result, TraceRefused):
        raise click.ClickException("bad --days or --margin")
    tz = _settings().tz
    click.echo(
        f"{result.case.person_no}: {len(result.contacts)} contacts, "
        f"{result.window.since.astimezone(tz):%Y-%m-%d %H:%M} – "
        f"{result.window.until.astimezone(tz):%Y-%m-%d %H:%M}, margin {result.margin_minutes} min"
    )
    for rank, c in enumerate(result.contacts, 1):
        e = c.main
        click.echo(
            f"{rank:>5} {c.person_no:<12} {c.overlap_minutes:>5} min  {e.place_code:<12} "
            f"{e.overlap_from.astimezone(tz):%Y-%m-%d %H:%M}  ({len(c.encounters)} encounters)"
        )
    if csv_file is not None:
        with open(csv_file, "w", encoding="utf-8", newline="") as out:
            rows = write_csv(result, out, tz)
        click.echo(f"{rows} encounters written to {csv_file}")


@main.group()
def incident() -> None:
    """Incidents: open (red, trace, notify), mark close contacts (yellow), show, close."""


def _incident_error(refusal: object, what: str) -> click.ClickException:
    reason = getattr(getattr(refusal, "reason", None), "value", "refused")
    number = getattr(refusal, "incident_id", None)
    suffix = f" (incident {number})" if number else ""
    return click.ClickException(f"{what}: {reason}{suffix}")


@incident.command("open")
@click.argument("person_no")
@click.argument("note", nargs=-1, required=True)
@click.option("--days", type=click.IntRange(1, 365), default=None)
@click.option("--margin", type=click.IntRange(0, 1440), default=None)
@click.option("--by", "actor", default="cli", show_default=True, help="Who decided (audit).")
def incident_open(
    person_no: str, note: tuple[str, ...], days: int | None, margin: int | None, actor: str
) -> None:
    """Open an incident for PERSON_NO: red with NOTE, trace, tell them and their units."""
    from campus.tracing.incidents import Opened

    result = _tracing(
        lambda kit: kit.incidents.open(
            person_no, " ".join(note), actor=f"cli:{actor}"[:100], days=days, margin=margin
        )
    )
    if not isinstance(result, Opened):
        raise _incident_error(result, f"cannot open an incident for {person_no!r}")
    click.echo(
        f"incident {result.incident_id}: {result.trace.case.person_no} "
        f"{result.before.value} -> {result.after.value}, {len(result.trace.contacts)} contacts"
    )


@incident.command("mark")
@click.argument("incident_id", type=int)
@click.argument("person_nos", nargs=-1)
@click.option("--all", "everyone", is_flag=True, help="Every contact not marked yet.")
@click.option("--by", "actor", default="cli", show_default=True, help="Who decided (audit).")
def incident_mark(
    incident_id: int, person_nos: tuple[str, ...], everyone: bool, actor: str
) -> None:
    """Mark contacts of INCIDENT_ID close contacts (yellow, told urgently with their units)."""
    from campus.tracing.incidents import Marked

    if everyone == bool(person_nos):
        raise click.ClickException("name the contacts' person numbers, or --all")
    result = _tracing(
        lambda kit: kit.incidents.mark(
            incident_id, None if everyone else list(person_nos), actor=f"cli:{actor}"[:100]
        )
    )
    if not isinstance(result, Marked):
        raise _incident_error(result, f"cannot mark contacts of incident {incident_id}")
    click.echo(f"marked {len(result.marked)}: {' '.join(result.marked)}")
    if result.already:
        click.echo(f"marked before: {' '.join(result.already)}")
    if result.not_contacts:
        click.echo(f"not contacts: {' '.join(result.not_contacts)}")


@incident.command("close")
@click.argument("incident_id", type=int)
@click.argument("note", nargs=-1)
@click.option("--by", "actor", default="cli", show_default=True, help="Who decided (audit).")
def incident_close(incident_id: int, note: tuple[str, ...], actor: str) -> None:
    """Close INCIDENT_ID (recorded in its log; statuses stay as they are)."""
    from campus.tracing.incidents import IncidentView

    result = _tracing(
        lambda kit: kit.incidents.close(incident_id, " ".join(note), actor=f"cli:{actor}"[:100])
    )
    if not isinstance(result, IncidentView):
        raise _incident_error(result, f"cannot close incident {incident_id}")
    click.echo(f"incident {incident_id} closed")


@incident.command("show")
@click.argument("incident_id", type=int)
@click.option("--by", "actor", default="cli", show_default=True, help="Who asked (audit).")
def incident_show(incident_id: int, actor: str) -> None:
    """INCIDENT_ID: its case, contacts (marked or not) and its log (the read is audited)."""
    from campus.tracing.incidents import IncidentView

    view = _tracing(lambda kit: kit.incidents.show(incident_id, actor=f"cli:{actor}"[:100]))
    if not isinstance(view, IncidentView):
        raise _incident_error(view, f"no incident {incident_id}")
    tz = _settings().tz
    click.echo(f"incident {view.incident_id} ({view.state}): {view.person_no} {view.note}")
    for c in view.contacts:
        marked = f"marked {c.marked_at.astimezone(tz):%m-%d %H:%M}" if c.marked_at else ""
        click.echo(
            f"{c.rank:>5} {c.person_no:<12} {c.overlap_minutes:>5} min  {c.place_name}  "
            f"{c.first_at.astimezone(tz):%Y-%m-%d %H:%M}  {marked}"
        )
    for line in view.log:
        click.echo(
            f"  {line.at.astimezone(tz):%Y-%m-%d %H:%M} {line.actor} {line.action} {line.detail}"
        )
