"""The application factory: create_app(settings) -> web.Application; nothing connects at import."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import appkeys as K
from bot import web_dashboard, web_trace
from bot.clock import Clock, SystemClock
from bot.dispatch.dispatcher import Dispatcher
from bot.dispatch.locks import UserLocks
from bot.dispatch.ratelimit import RateLimiter
from bot.dispatch.state import StateStore
from bot.i18n import load_all
from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV, RedisKV
from bot.services import build_services
from bot.settings import Settings
from bot.wechat.api import WeChatAPI
from bot.wechat.callback import Callback, CallbackConfig
from bot.wechat.courier import Courier
from bot.wechat.dedup import Deduplicator
from bot.wechat.token import AccessTokenManager
from handlers import build_router
from handlers.guard import scan_prefetch
from scheduler.runner import Scheduler, job_context
from storage import engine as db
from storage.migrate import upgrade

log = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    kv: KV | None = None,
    migrate: bool | None = None,
    scheduler: bool = False,
    callback: bool = True,
) -> web.Application:
    """The bot. `kv` and `clock` are injectable for tests; `migrate` defaults to SQLite only.

    `scheduler` runs the cron jobs and the outbox dispatcher in this process (`serve` does
    unless --no-scheduler; tests build the scheduler they need themselves). Without
    `callback` only /healthz and /metrics are routed (`healthbot scheduler --port`).
    """
    # aiosqlite logs every statement with its parameters at DEBUG: personal data. Keep it
    # quiet even when the rest of the process logs at DEBUG.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    app = web.Application(client_max_size=settings.max_body_bytes + 1024)
    app[K.SETTINGS] = settings
    app[K.CLOCK] = clock or SystemClock()
    load_all()  # a broken catalog fails here, not in a user's chat

    async def database(app: web.Application) -> AsyncIterator[None]:
        engine = db.create_engine(settings.database_url)
        if migrate if migrate is not None else settings.is_sqlite:
            await upgrade(engine)
        app[K.ENGINE] = engine
        app[K.SESSIONS] = db.session_factory(engine)
        yield
        await engine.dispose()

    async def state(app: web.Application) -> AsyncIterator[None]:
        store: KV
        if kv is not None:
            store = kv
        elif settings.redis_url:
            store = RedisKV.from_url(settings.redis_url)
        else:
            log.info("HEALTHBOT_REDIS_URL unset: state is in memory, single process only")
            store = MemoryKV()
        app[K.KV_STORE] = store
        yield
        if kv is None:
            await store.close()

    async def wechat(app: web.Application) -> AsyncIterator[None]:
        keys = Keyspace(settings.wechat_appid)
        http = aiohttp.ClientSession()
        tokens = AccessTokenManager(http, settings, app[K.KV_STORE], keys, app[K.CLOCK])
        api = WeChatAPI(http, settings, tokens)
        courier = Courier(api)
        app[K.HTTP], app[K.API], app[K.COURIER] = http, api, courier
        store = app[K.KV_STORE]
        services = build_services(settings, app[K.SESSIONS], store, keys, app[K.CLOCK], api)
        services["api"] = api
        app[K.SERVICES] = services
        dispatcher = Dispatcher(
            router=build_router(),
            kv=store,
            states=StateStore(store, keys, settings.conversation_ttl, services["vault"]),
            locks=UserLocks(store, keys),
            limiter=RateLimiter(
                keys,
                settings.rate_limit_per_minute,
                app[K.CLOCK],
                guard_per_minute=settings.guard_rate_limit_per_minute,
            ),
            accounts=services["accounts"],
            services=services,
            prefetch=[scan_prefetch(services["duty"], services["passes"])],
        )
        app[K.CALLBACK] = Callback(
            CallbackConfig(
                token=settings.wechat_token,
                appid=settings.wechat_appid,
                aes_key=settings.wechat_aes_key,
                timestamp_tolerance=settings.timestamp_tolerance,
                max_body_bytes=settings.max_body_bytes,
                reply_deadline=settings.reply_deadline,
                default_locale=settings.default_locale,
            ),
            app[K.CLOCK],
            Deduplicator(store, keys, ttl=settings.dedup_ttl),
            dispatcher,
            courier,
        )
        yield
        async with contextlib.AsyncExitStack() as closing:  # each runs, whatever the others do
            closing.push_async_callback(http.close)
            closing.push_async_callback(courier.drain)
            # Written behind: last_seen_at refreshes, and access records (the first to go).
            closing.push_async_callback(services["accounts"].close)
            closing.push_async_callback(services["access"].close)
            # The first to go: messages' last round trips still in flight, while the store
            # is open.
            closing.push_async_callback(dispatcher.drain)

    async def scheduling(app: web.Application) -> AsyncIterator[None]:
        context = job_context(
            settings,
            app[K.SESSIONS],
            app[K.KV_STORE],
            app[K.CLOCK],
            app[K.SERVICES]["notifications"],
        )
        app[K.SCHEDULER] = runner = Scheduler(context, app[K.API])
        await runner.start()
        yield
        await runner.stop()

    app.cleanup_ctx.extend([database, state, wechat])
    if scheduler:
        app.cleanup_ctx.append(scheduling)

    async def wechat_get(request: web.Request) -> web.StreamResponse:
        return await request.app[K.CALLBACK].get(request)

    async def wechat_post(request: web.Request) -> web.StreamResponse:
        return await request.app[K.CALLBACK].post(request)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if callback:
        app.router.add_get("/wechat", wechat_get)
        app.router.add_post("/wechat", wechat_post)
        app.router.add_get("/dashboard", web_dashboard.dashboard_page)
        app.router.add_get("/trace", web_trace.trace_page)
    return app


async def healthz(request: web.Request) -> web.Response:
    database_ok = await db.ping(request.app[K.ENGINE])
    state_ok = await request.app[K.KV_STORE].ping()
    ok = database_ok and state_ok
    body = {
        "status": "ok" if ok else "unavailable",
        "database": "ok" if database_ok else "down",
        "state": ("redis" if isinstance(request.app[K.KV_STORE], RedisKV) else "memory")
        + ("" if state_ok else " down"),
    }
    return web.Response(
        status=200 if ok else 503, text=json.dumps(body), content_type="application/json"
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})
