"""The outbox dispatcher: claims due pushes, sends them through the WeChat API, records outcomes.

Channel: a customer-service text while the person is inside WeChat's 48-hour window (their
last interaction, wechat_accounts.last_seen_at), else the template message configured for the
push's kind (HEALTHBOT_TEMPLATE_IDS). 45015 (outside the window) and 45047 (customer-service
quota used up) fall back to the template at once. A kind without a template fails as
`no_template`; a person without a WeChat account fails as `unbound`.

Errors by class (bot/wechat/errors.py):
- -1 (busy), 45011 (per-minute limit), network errors, and token errors left after the API
  client's own refresh-and-retry: retried with exponential backoff and full jitter, up to
  HEALTHBOT_OUTBOX_MAX_ATTEMPTS claims; 45011 also pauses every dispatcher for a few seconds.
- 45009 (daily quota): every dispatcher pauses until the quota resets at midnight, Beijing
  time (a pause-until in the KV store, shared through Redis); the push waits, not counted.
- 43004, 40003, 40037, 47001 and any unknown errcode: failed, with the errcode recorded.

Sharing and crashes. On PostgreSQL any number of dispatchers share the outbox: a claim is one
`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …` that marks rows `sending`
until `claimed_until`. On SQLite only one process dispatches (the scheduler's leader): SQLite
has one writer, so more would only queue on its lock. Each push is marked `sent` in its own
short transaction as soon as WeChat accepts it. A dispatcher that dies leaves its claimed rows
`sending`; when `claimed_until` passes they are claimed again. So a crash loses nothing, and
it can double only the pushes that were on the wire at the instant of the crash (WeChat had
accepted them, we had not yet written `sent`): at most HEALTHBOT_OUTBOX_CONCURRENCY pushes,
typically the few in flight. WeChat's customer-service API has no idempotency key, so those
cannot be made safe; template sends carry `client_msg_id` = the outbox row, which WeChat
deduplicates for 10 minutes, so a template push re-sent within 10 minutes of a crash is not
delivered twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock, utcnow
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.loop import TICK
from bot.metrics import OUTBOX_FAILED, OUTBOX_LATENCY, OUTBOX_RETRIED, OUTBOX_SENT
from bot.settings import Settings
from bot.wechat.errors import (
    CustomQuotaExceeded,
    NetworkError,
    OutsideWindow,
    QuotaExceeded,
    RateLimited,
    WeChatAPIError,
    WeChatError,
)
from campus.notifications import Notifications, Schedule
from storage import outbox
from storage.outbox import Accepted, Claimed

log = logging.getLogger(__name__)

WECHAT_DAY = ZoneInfo("Asia/Shanghai")  # WeChat's daily quotas reset at midnight, Beijing time
WINDOW = timedelta(hours=48) - timedelta(minutes=5)  # a margin for clock skew
RATE_LIMIT_PAUSE = 5.0
MARK_RETRIES = (0.1, 0.5, 2.0)


class PushAPI(Protocol):
    async def send_text(self, openid: str, content: str) -> object: ...

    async def send_template(
        self,
        openid: str,
        template_id: str,
        data: Mapping[str, str | Mapping[str, str]],
        url: str | None = None,
        client_msg_id: str | None = None,
    ) -> int: ...


@dataclass(frozen=True)
class DispatchConfig:
    concurrency: int = 32
    claim_seconds: float = 60.0
    max_attempts: int = 12
    template_ids: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 1.0
    backoff_base: float = 5.0
    backoff_cap: float = 1800.0
    depth_interval: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> DispatchConfig:
        values: dict[str, Any] = {
            "concurrency": settings.outbox_concurrency,
            "claim_seconds": settings.outbox_claim_seconds,
            "max_attempts": settings.outbox_max_attempts,
            "template_ids": dict(settings.template_ids),
            **overrides,
        }
        return cls(**values)


class NoTemplate(Exception):
    """Outside the window, and no template id is configured for the push's kind."""


def error_code(exc: BaseException) -> str:
    """A short code for last_error and metrics: the errcode, or the failure's class."""
    if isinstance(exc, WeChatAPIError):
        return str(exc.errcode)
    if isinstance(exc, NetworkError):
        return "network"
    return type(exc).__name__.lower()[:40]


def next_quota_reset(now: datetime) -> datetime:
    local = now.astimezone(WECHAT_DAY)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), WECHAT_DAY)
    return midnight.astimezone(UTC)


class OutboxDispatcher:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        api: PushAPI,
        kv: KV,
        keys: Keyspace,
        clock: Clock,
        config: DispatchConfig,
        schedule: Schedule | None = None,
        *,
        may_dispatch: Callable[[], bool] = lambda: True,
        notifications: Notifications | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`may_dispatch` is asked before each claim (on SQLite: "am I the leader?")."""
        self._sessions = sessions
        self._api = api
        self._kv = kv
        self._pause_key = keys.outbox_paused_until()
        self._clock = clock
        self.config = config
        self._schedule = schedule or Schedule()
        self._may_dispatch = may_dispatch
        self._notifications = notifications or Notifications(sessions, self._schedule)
        self._rng = rng or random.Random()
        self._queue: asyncio.Queue[Claimed | None] = asyncio.Queue(config.concurrency)
        self._room = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sent = SentRecorder(sessions, clock)
        self._last_reclaim = float("-inf")
        self._last_depth = float("-inf")

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name="outbox-dispatcher")

    async def stop(self) -> None:
        """Finish the sends in flight, give back claimed rows not yet tried, and return."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def run(self) -> None:
        workers = [
            asyncio.create_task(self._worker(), name=f"outbox-worker-{i}")
            for i in range(self.config.concurrency)
        ]
        try:
            await self._feed()
        finally:
            await self._shutdown(workers)

    async def _feed(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                delay = await self._feed_once()
                failures = 0
            except Exception:
                # The database or Redis is down: keep the loop alive, try again less often.
                failures += 1
                delay = min(30.0, max(self.config.poll_interval, 1.0) * 2 ** (failures - 1))
                if failures == 1 or failures % 10 == 0:
                    log.exception("outbox dispatcher: claiming failed (%d× in a row)", failures)
            if delay:
                await self._idle(delay)

    async def _feed_once(self) -> float:
        """Claim what fits in the queue; returns how long to wait before the next round."""
        if not self._may_dispatch():
            return self.config.poll_interval
        paused = await self.pause_remaining()
        if paused > 0:
            return max(min(paused, self.config.poll_interval), TICK)
        await self._housekeep_if_due()
        room = self._queue.maxsize - self._queue.qsize()
        if room < max(1, self._queue.maxsize // 2):
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), self.config.poll_interval)
            return 0
        rows = await self._claim(room)
        for row in rows:
            self._queue.put_nowait(row)
        return 0 if len(rows) == room else self.config.poll_interval

    async def _worker(self) -> None:
        while True:
            row = await self._queue.get()
            self._room.set()
            if row is None:
                return
            try:
                await self._deliver(row)
            except Exception:
                log.exception("outbox row %s: delivery crashed", row.id)

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        untried: list[tuple[int, int]] = []
        while not self._queue.empty():
            row = self._queue.get_nowait()
            if row is not None:
                untried.append((row.id, row.attempts))
        for _ in workers:
            self._queue.put_nowait(None)  # room: the queue was just emptied
        await asyncio.gather(*workers, return_exceptions=True)
        await self._sent.close()
        if untried:
            try:
                async with self._sessions.begin() as session:
                    await outbox.release(session, untried)
            except Exception:
                log.exception(
                    "could not give back %d claimed rows; they return when their claim expires",
                    len(untried),
                )

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def run_until_idle(self) -> int:
        """Send everything due now, then return how many rows were handled (tests, `jobs`)."""
        handled = 0
        await self.reclaim_expired()
        try:
            while await self.pause_remaining() <= 0:
                rows = await self._claim(self.config.concurrency)
                if not rows:
                    break
                await asyncio.gather(*(self._deliver(row) for row in rows))
                handled += len(rows)
        finally:
            await self._sent.close()
        return handled

    # -- claiming and housekeeping -----------------------------------------------------------

    def _now(self) -> datetime:
        return utcnow(self._clock)

    async def _claim(self, limit: int) -> list[Claimed]:
        now = self._now()
        async with self._sessions.begin() as session:
            return await outbox.claim(
                session,
                now=now,
                until=now + timedelta(seconds=self.config.claim_seconds),
                limit=limit,
                urgent_only=self._schedule.release(now, urgent=False) > now,
            )

    async def reclaim_expired(self) -> tuple[int, int]:
        async with self._sessions.begin() as session:
            requeued, failed = await outbox.reclaim_expired(
                session, now=self._now(), max_attempts=self.config.max_attempts
            )
        if requeued or failed:
            log.warning(
                "outbox: %d claims expired (a dispatcher died?): %d requeued, %d out of attempts",
                requeued + failed,
                requeued,
                failed,
            )
        return requeued, failed

    async def _housekeep_if_due(self) -> None:
        mono = self._clock.monotonic()
        if mono - self._last_reclaim >= self.config.claim_seconds / 4:
            self._last_reclaim = mono
            await self.reclaim_expired()
        if mono - self._last_depth >= self.config.depth_interval:
            self._last_depth = mono
            # The backlog only: counting every sent row of the retention period each few
            # seconds in every process would cost more than it tells (housekeeping does it).
            await self._notifications.depth(backlog_only=True)

    # -- pausing -----------------------------------------------------------------------------

    async def pause_remaining(self) -> float:
        raw = await self._kv.get(self._pause_key)
        if raw is None:
            return 0.0
        try:
            return max(0.0, float(raw) - self._clock.time())
        except ValueError:
            return 0.0

    async def _pause_until(self, until: float, why: str) -> None:
        if await self.pause_remaining() + self._clock.time() >= until:
            return  # a longer pause is already set
        await self._kv.set(self._pause_key, repr(until), ttl=max(1.0, until - self._clock.time()))
        log.warning(
            "outbox: sending paused until %s (%s)",
            datetime.fromtimestamp(until, UTC).isoformat(),
            why,
        )

    # -- one push ----------------------------------------------------------------------------

    async def _deliver(self, row: Claimed) -> None:
        if row.openid is None:
            await self._fail(row, "unbound")
            return
        try:
            channel, msgid = await self._send(row)
        except NoTemplate:
            await self._fail(row, "no_template")
        except QuotaExceeded as exc:
            resume = next_quota_reset(self._now())
            await self._pause_until(resume.timestamp(), f"daily quota {exc.errcode}")
            await self._record(
                outbox.retry_later,
                row,
                not_before=self._schedule.release(resume, urgent=row.urgent),
                error=error_code(exc),
                count_attempt=False,
            )
        except WeChatError as exc:
            if isinstance(exc, RateLimited):
                await self._pause_until(
                    self._clock.time() + RATE_LIMIT_PAUSE, f"rate limit {exc.errcode}"
                )
            await self._retry_or_fail(row, error_code(exc), exc.retryable)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("outbox row %s has a bad payload: %s", row.id, type(exc).__name__)
            await self._fail(row, "bad_payload")
        else:
            if await self._sent.record(Accepted(row.id, row.attempts, channel, msgid)):
                OUTBOX_SENT.labels(kind=row.kind, channel=channel).inc()
                OUTBOX_LATENCY.labels(channel=channel).observe(
                    max(0.0, (self._now() - row.not_before).total_seconds())
                )
            else:
                log.warning("outbox row %s: sent, but its claim had expired", row.id)

    async def _send(self, row: Claimed) -> tuple[str, int | None]:
        assert row.openid is not None
        text = row.payload["text"]
        if not isinstance(text, str):
            raise TypeError("payload text is not a string")
        now = self._now()
        if row.last_seen_at is not None and now - row.last_seen_at < WINDOW:
            try:
                await self._api.send_text(row.openid, text)
                return "custom", None
            except (OutsideWindow, CustomQuotaExceeded) as exc:
                log.debug("outbox row %s: %s, falling back to a template", row.id, exc.errcode)
        template_id = self.config.template_ids.get(row.kind)
        if not template_id:
            raise NoTemplate(row.kind)
        data = row.payload.get("template_data") or {"content": text}
        msgid = await self._api.send_template(
            row.openid,
            template_id,
            data,
            url=row.payload.get("url"),
            client_msg_id=f"outbox-{row.id}",
        )
        return "template", msgid

    async def _retry_or_fail(self, row: Claimed, code: str, retryable: bool) -> None:
        if not retryable or row.attempts >= self.config.max_attempts:
            await self._fail(row, code)
            return
        delay = min(self.config.backoff_cap, self.config.backoff_base * 2 ** (row.attempts - 1))
        delay *= self._rng.uniform(0.5, 1.5)
        due = self._now() + timedelta(seconds=delay)
        if await self._record(
            outbox.retry_later,
            row,
            not_before=self._schedule.release(due, urgent=row.urgent),
            error=code,
        ):
            OUTBOX_RETRIED.labels(code=code).inc()

    async def _fail(self, row: Claimed, code: str) -> None:
        if await self._record(outbox.mark_failed, row, error=code):
            OUTBOX_FAILED.labels(kind=row.kind, code=code).inc()
            log.info("outbox row %s (%s) failed: %s", row.id, row.kind, code)

    async def _record(self, update: Callable[..., Any], row: Claimed, **values: Any) -> bool:
        """Write an outcome in its own transaction, retrying briefly if the database hiccups.

        False when the claim was no longer ours (it expired and another dispatcher took it).
        """
        for attempt, pause in enumerate((*MARK_RETRIES, None)):
            try:
                async with self._sessions.begin() as session:
                    held: bool = await update(session, row.id, row.attempts, **values)
                break
            except Exception:
                if pause is None:
                    log.exception(
                        "outbox row %s: outcome not recorded; the claim will expire and the "
                        "push may be sent again",
                        row.id,
                    )
                    return False
                log.warning("outbox row %s: recording failed (try %d)", row.id, attempt + 1)
                await asyncio.sleep(pause)
        if not held:
            log.warning("outbox row %s: the claim expired before its outcome was recorded", row.id)
        return held


class SentRecorder:
    """Marks accepted pushes `sent`: a group commit right after WeChat's answers.

    Whatever the workers had accepted while the previous write ran goes into the next one, one
    short transaction, started at once. A push is therefore recorded within about two
    transaction times of WeChat accepting it (the window in which a crash could resend it),
    and a broadcast costs one commit per group rather than one per push.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock
        self._waiting: list[tuple[Accepted, asyncio.Future[bool]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, accepted: Accepted) -> bool:
        """Wait until the push is recorded; False when its claim was no longer ours."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outbox-sent-recorder")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((accepted, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[tuple[Accepted, asyncio.Future[bool]]]) -> None:
        held: set[int] = set()
        for attempt, pause in enumerate((*MARK_RETRIES, None)):
            try:
                async with self._sessions.begin() as session:
                    held = await outbox.mark_sent(
                        session, [a for a, _ in batch], now=utcnow(self._clock)
                    )
                break
            except Exception:
                if pause is None:
                    log.exception(
                        "%d sent pushes not recorded; their claims will expire and they may be "
                        "sent again",
                        len(batch),
                    )
                    break
                log.warning("recording %d sent pushes failed (try %d)", len(batch), attempt + 1)
                await asyncio.sleep(pause)
        for accepted, future in batch:
            if not future.done():
                future.set_result(accepted.id in held)

    async def close(self) -> None:
        """Stop the writer; call it once no worker is waiting on `record` any more."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, future in self._waiting:
            if not future.done():
                future.set_result(False)
        self._waiting = []
