"""`healthbot demo`: the bot, the emulated WeChat and a seeded campus in one process."""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from collections.abc import AsyncIterator
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
        return
    folder = resources.files("bot") / "demo_seed"
    for kind in SEED_FILES:
        with resources.as_file(folder / f"{kind}.csv") as path:
            report = await run_import(settings, kind, path, dry_run=False)
        if report.errors:
            raise RuntimeError(f"demo seed {kind}.csv is invalid: {report.errors[:3]}")
    log.info("seeded the demo campus")


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
