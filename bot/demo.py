"""`healthbot demo`: the bot, the emulated WeChat and a seeded campus in one process."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path

from aiohttp import web
from sqlalchemy import select

from bot import appkeys as K
from bot.app import create_app
from bot.menu import sync as sync_menu
from bot.settings import Settings
from campus.secrets import DataVault
from storage.models import Person, Unit

log = logging.getLogger(__name__)

DEMO_TOKEN = "healthbot-demo"  # noqa: S105 (a local emulated account, not a real secret)
DEMO_APPID = "wxdemo0000000001"
DEMO_SECRET = "healthbot-demo-secret"  # noqa: S105
DEMO_AES_KEY = "DemoDemoDemoDemoDemoDemoDemoDemoDemoDemo123"
SEED_FILES = ("units", "places", "persons")


def demo_settings(port: int, data_dir: Path, *, safe_mode: bool) -> Settings:
    key_file = data_dir / "data.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32))
        key_file.chmod(0o600)
    base = f"http://127.0.0.1:{port}"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite+aiosqlite:///{data_dir / 'healthbot.db'}",
        redis_url=None,
        wechat_token=DEMO_TOKEN,
        wechat_appid=DEMO_APPID,
        wechat_secret=DEMO_SECRET,
        wechat_aes_key=DEMO_AES_KEY if safe_mode else None,
        wechat_api_base=f"{base}/sim/api",
        public_url=base,
        data_key=key_file.read_text().strip(),
    )


def prepare_data_dir(data_dir: Path, *, fresh: bool) -> None:
    if fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)


def create_demo_app(settings: Settings, port: int) -> web.Application:
    from simulator import SimulatorConfig, create_simulator_app

    app = create_app(settings, scheduler=True)  # pushes (notices, reminders) go out too
    # The chat page uses relative URLs: /sim must become /sim/.
    app.middlewares.append(web.normalize_path_middleware(append_slash=True))
    base = f"http://127.0.0.1:{port}"
    app.add_subapp(
        "/sim/",
        create_simulator_app(
            SimulatorConfig(
                token=settings.wechat_token,
                appid=settings.wechat_appid,
                secret=settings.wechat_secret,
                aes_key=settings.wechat_aes_key,
                callback_url=f"{base}/wechat",
                personas_url=f"{base}/demo/personas",
                account_name="健康校园 Healthy Campus",
            )
        ),
    )
    app.router.add_get("/demo/personas", personas)
    app.router.add_get("/", to_chat_page)

    async def seed_and_menu(app: web.Application) -> AsyncIterator[None]:
        await seed(settings)
        task = asyncio.create_task(_sync_menu_when_listening(app))
        yield
        task.cancel()

    app.cleanup_ctx.append(seed_and_menu)
    return app


async def to_chat_page(request: web.Request) -> web.Response:
    raise web.HTTPFound("/sim/")


async def seed(settings: Settings) -> None:
    """Import the demo campus once; a reused data folder keeps what people did."""
    from campus.registry.importer import run_import
    from storage.engine import create_engine, session_factory

    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            seeded = (await session.execute(select(Unit.id).limit(1))).first() is not None
    except Exception:
        seeded = False  # no tables yet
    finally:
        await engine.dispose()
    if seeded:
        await seed_menus(settings)  # a reused data folder gets today's menus too
        await seed_returns(settings)  # ... and return batches open around today
        return
    folder = resources.files("bot") / "demo_seed"
    for kind in SEED_FILES:
        with resources.as_file(folder / f"{kind}.csv") as path:
            report = await run_import(settings, kind, path, dry_run=False)
        if report.errors:
            raise RuntimeError(f"demo seed {kind}.csv is invalid: {report.errors[:3]}")
    log.info("seeded the demo campus")
    await seed_menus(settings)
    await seed_returns(settings)


async def seed_menus(settings: Settings, today: date | None = None) -> None:
    """The demo menus, so that they never go stale: menus.csv's dates count from its first
    date, which becomes today (campus time). Imported at every start (an idempotent upsert)."""
    from campus.registry.importer import run_import

    today = today or datetime.now(settings.tz).date()
    text = (resources.files("bot") / "demo_seed" / "menus.csv").read_text(encoding="utf-8")
    header, *rows = list(csv.reader(io.StringIO(text)))
    column = header.index("date")
    first = min(date.fromisoformat(row[column]) for row in rows)
    for row in rows:
        row[column] = (today + (date.fromisoformat(row[column]) - first)).isoformat()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "menus.csv"
        with path.open("w", encoding="utf-8", newline="") as fp:
            csv.writer(fp, lineterminator="\n").writerows([header, *rows])
        report = await run_import(settings, "menus", path, dry_run=False)
    if report.errors:  # the demo runs on without a fresh menu rather than not at all
        log.warning("demo menus not seeded: %s", report.errors[:3])


DEMO_STREAK_DAYS = 14
# Left without check-in history, so the demo shows what an ineligible student is told.
DEMO_NO_HISTORY = frozenset({"S2101005"})


async def seed_returns(settings: Settings, today: date | None = None) -> None:
    """The demo's return batches, never stale: batches.csv's dates move together so that its
    first window opened yesterday (campus time); imported at every start (an idempotent
    upsert). The demo's students get two weeks of normal check-ins, so they may apply."""
    from campus.registry.importer import import_rows
    from storage.engine import create_engine, session_factory
    from storage.models import HealthReport

    today = today or datetime.now(settings.tz).date()
    text = (resources.files("bot") / "demo_seed" / "batches.csv").read_text(encoding="utf-8")
    header, *rows = list(csv.reader(io.StringIO(text)))
    start, end = header.index("arrive_from"), header.index("arrive_to")
    first = min(date.fromisoformat(row[start]) for row in rows)
    shift = (today - timedelta(days=1)) - first
    lines = []
    for number, row in enumerate(rows, start=2):
        for column in (start, end):
            row[column] = (date.fromisoformat(row[column]) + shift).isoformat()
        lines.append((number, dict(zip(header, row, strict=True))))
    engine = create_engine(settings.database_url)
    try:
        sessions = session_factory(engine)
        vault = DataVault.from_setting(settings.data_key)
        report = await import_rows(sessions, vault, "batches", lines)
        if report.errors:
            log.warning("demo batches not seeded: %s", report.errors[:3])
        now = datetime.now(UTC)
        async with sessions.begin() as session:
            students = [
                pid
                for pid, no in await session.execute(
                    select(Person.id, Person.person_no).where(Person.category == "student")
                )
                if no not in DEMO_NO_HISTORY
            ]
            have = set(
                (
                    await session.execute(
                        select(HealthReport.person_id, HealthReport.day).where(
                            HealthReport.day >= today - timedelta(days=DEMO_STREAK_DAYS)
                        )
                    )
                ).all()
            )
            for pid in students:
                for back in range(1, DEMO_STREAK_DAYS + 1):
                    day = today - timedelta(days=back)
                    if (pid, day) not in have:
                        session.add(
                            HealthReport(
                                person_id=pid,
                                day=day,
                                temperature=365,
                                location="campus",
                                submitted_at=now - timedelta(days=back),
                            )
                        )
    finally:
        await engine.dispose()


async def _sync_menu_when_listening(app: web.Application) -> None:
    # The emulated API is served by this very process, so wait until it listens.
    for _ in range(50):
        await asyncio.sleep(0.2)
        try:
            await sync_menu(app[K.API])
            return
        except Exception:  # noqa: S112 (not listening yet: try again)
            continue
    log.warning("could not create the demo menu")


async def personas(request: web.Request) -> web.Response:
    """The demo's people for the chat page, with the ID tail to bind with (demo data only)."""
    sessions = request.app[K.SESSIONS]
    vault: DataVault = request.app[K.SERVICES]["vault"]
    async with sessions() as session:
        rows = (
            await session.execute(
                select(Person, Unit.name).join(Unit, Unit.id == Person.unit_id).order_by(Person.id)
            )
        ).all()
    return web.json_response(
        {
            "personas": [
                {
                    "key": person.person_no,
                    "person_no": person.person_no,
                    "name": person.name,
                    "category": person.category,
                    "roles": sorted(person.role_set),
                    "unit": unit_name,
                    "bind_hint": vault.decrypt(person.id_cipher)[-6:],
                }
                for person, unit_name in rows
            ]
        }
    )
