"""The /wechat endpoint: verify, decrypt, dedup, parse, dispatch, and reply within 4.5 s."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from aiohttp import web

from bot.clock import Clock
from bot.dispatch.dispatcher import Dispatcher, Duplicate, claims
from bot.dispatch.locks import LockTimeout
from bot.i18n import translator
from bot.metrics import CALLBACK_REQUESTS, DEDUP_HITS
from bot.replies import Image, Reply, Text
from bot.wechat.courier import Courier
from bot.wechat.dedup import PENDING, Claim, Deduplicator, Once
from bot.wechat.messages import Incoming, parse_incoming, parse_outer
from bot.wechat.render import SUCCESS, encrypt_reply, render
from bot.wechat.security import CallbackRejected, Cipher, check_signature, check_timestamp

log = logging.getLogger(__name__)

# A message is handled on its request's own task, and a late one goes on after WeChat got
# `success` at the deadline and hung up (see _Late): servers of this callback run with
# aiohttp's handler cancellation off, its default, which `healthbot serve` states.
HANDLER_CANCELLATION = False

# The two outcomes of nearly every request, bound once (labels() takes a lock each call).
_REPLIED = CALLBACK_REQUESTS.labels("reply")
_EMPTY = CALLBACK_REQUESTS.labels("empty")


@dataclass(frozen=True)
class CallbackConfig:
    token: str
    appid: str
    aes_key: str | None
    timestamp_tolerance: int = 300
    max_body_bytes: int = 256 * 1024
    reply_deadline: float = 4.5
    default_locale: str = "zh_CN"


class Callback:
    def __init__(
        self,
        config: CallbackConfig,
        clock: Clock,
        dedup: Deduplicator,
        dispatcher: Dispatcher,
        courier: Courier,
    ) -> None:
        self._config = config
        self._clock = clock
        self._dedup = dedup
        self._dispatcher = dispatcher
        self._courier = courier
        self._cipher = Cipher(config.aes_key, config.appid) if config.aes_key else None
        self._late: set[asyncio.Task[None]] = set()

    async def get(self, request: web.Request) -> web.Response:
        """WeChat's server verification: echo `echostr` when the signature holds."""
        try:
            query = request.query
            check_timestamp(query.get("timestamp"), self._clock.time(), self._tolerance)
            check_signature(
                (self._config.token, query["timestamp"], query.get("nonce", "")),
                query.get("signature"),
                "signature",
            )
            echostr = query.get("echostr")
            if not echostr:
                raise CallbackRejected(400, "missing echostr")
        except CallbackRejected as exc:
            return self._reject(exc)
        return web.Response(text=echostr)

    @property
    def _tolerance(self) -> int:
        return self._config.timestamp_tolerance

    async def post(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.reply_deadline
        try:
            body = await self._read_body(request)
            xml, safe = self._open(request, body)
            msg = parse_incoming(xml)
        except CallbackRejected as exc:
            return self._reject(exc)
        try:
            answer = await self._answer(msg, deadline, request)
        except Exception:
            # The shared store itself failed (Redis down, pool exhausted): the user still gets
            # a polite answer, never a 500, and WeChat's retry will try again.
            CALLBACK_REQUESTS.labels("error").inc()
            log.exception("could not process a %s message", msg.kind)
            sorry = self._sorry(msg, busy=False).first
            answer = render(sorry, openid=msg.openid, account=msg.account)
        if not isinstance(answer, str):
            return answer  # `success`, sent when the deadline passed (see _Late)
        plain = answer
        if safe and self._cipher is not None:
            return _xml(encrypt_reply(plain, self._cipher, self._config.token))
        return _xml(plain)

    async def _read_body(self, request: web.Request) -> bytes:
        limit = self._config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise CallbackRejected(413, "body too large")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            raise CallbackRejected(413, "body too large")
        if not body.strip():
            raise CallbackRejected(400, "empty body")
        return body

    def _open(self, request: web.Request, body: bytes) -> tuple[str, bool]:
        """The message XML, checked; and whether the request came in safe mode."""
        query = request.query
        timestamp, nonce = query.get("timestamp"), query.get("nonce", "")
        check_timestamp(timestamp, self._clock.time(), self._tolerance)
        assert timestamp is not None
        if query.get("encrypt_type", "raw").lower() == "aes":
            if self._cipher is None:
                raise CallbackRejected(400, "safe mode is not configured (no AES key)")
            outer = parse_outer(body)
            encrypted = outer.get("Encrypt")
            if not isinstance(encrypted, str) or not encrypted:
                raise CallbackRejected(400, "missing Encrypt")
            check_signature(
                (self._config.token, timestamp, nonce, encrypted),
                query.get("msg_signature"),
                "msg_signature",
            )
            return self._cipher.decrypt(encrypted), True
        check_signature((self._config.token, timestamp, nonce), query.get("signature"), "signature")
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError as exc:
            raise CallbackRejected(400, "body is not UTF-8") from exc

    async def _answer(
        self, msg: Incoming, deadline: float, request: web.Request
    ) -> str | web.StreamResponse:
        """The passive reply's plaintext; or, once the deadline passed, the response that
        answered `success` then (the answer goes as a customer-service message).

        The message is handled on the request's own task; a timer at the deadline has
        `success` written for WeChat at once, while the handling goes on (see _Late)."""
        if not claims(msg):
            return await self._answer_unclaimed(msg, deadline)
        loop = asyncio.get_running_loop()
        key = msg.dedup_key
        once = self._dedup.once(key, lambda reply: self._render(msg, reply))
        late = _Late(request, once, self._late)
        timer = loop.call_at(deadline, late.begin)
        outcome: Reply | Duplicate
        try:
            # One turn of the loop first, as a task of its own used to take: the messages
            # that arrived together then start their round trips together, so their Redis
            # commands leave in one write and their scans meet in one database batch.
            # Without it a guard scan took 5–15% more CPU at 50 connections (A/B runs of
            # the verify benchmark's load, alternating the two builds).
            await asyncio.sleep(0)
            # No await may come between the dispatcher's return and the timer's cancel below:
            # a stamp the dispatcher leaves behind (Dispatcher._leave_behind) is decided at
            # its return, and a deadline passing after it would stamp `success` as well.
            outcome = await self._dispatch(msg, deadline, once)
        except Duplicate as dup:
            outcome = dup
        except Exception:
            timer.cancel()
            if late.response is None:
                raise
            # The store failed after `success` went out: nothing more can be done for it.
            log.warning("could not finish a late %s message", msg.kind, exc_info=True)
            self._settle_late(once)
            return await late.answered()
        except BaseException:
            # Cancelled (a shutdown that stopped waiting): the claim expires in its own time,
            # and no local waiter is left behind for ever.
            timer.cancel()
            if once.is_claimed:
                self._dedup.settled(key)
            raise
        timer.cancel()
        if late.response is not None:
            self._settle_late(once)
            if isinstance(outcome, Reply):  # not a retry of a message answered elsewhere
                first = [outcome.first] if isinstance(outcome.first, Text | Image) else []
                self._courier.send(msg.openid, [*first, *outcome.follow_ups], wait=False)
            return await late.answered()
        if isinstance(outcome, Duplicate):
            DEDUP_HITS.inc()
            CALLBACK_REQUESTS.labels("duplicate").inc()
            if outcome.value != PENDING:
                return outcome.value.decode()
            stored = await self._dedup.wait(key, max(0.0, deadline - loop.time()))
            return stored if stored is not None else SUCCESS
        # Stamped in the dispatcher's last round trip; unclaimed (gave up before its first
        # round trip): answered, and a retry runs anew.
        plain = once.plain if once.plain is not None else self._render(msg, outcome)
        if once.is_claimed:  # not before: the waiters may be another delivery's
            self._dedup.settled(key)
        self._courier.send(msg.openid, outcome.follow_ups)
        (_EMPTY if plain == SUCCESS else _REPLIED).inc()
        return plain

    async def _answer_unclaimed(self, msg: Incoming, deadline: float) -> str:
        """Messages the dispatcher answers without its round trips (menu navigation, receipts):
        claimed and stored here."""
        loop = asyncio.get_running_loop()
        key = msg.dedup_key
        if await self._dedup.claim(key) is Claim.DUPLICATE:
            DEDUP_HITS.inc()
            CALLBACK_REQUESTS.labels("duplicate").inc()
            stored = await self._dedup.wait(key, max(0.0, deadline - loop.time()))
            return stored if stored is not None else SUCCESS
        reply = await self._dispatch(msg, deadline)
        plain = self._render(msg, reply)
        await self._dedup.store(key, plain)
        (_EMPTY if plain == SUCCESS else _REPLIED).inc()
        return plain

    @staticmethod
    def _render(msg: Incoming, reply: Reply) -> str:
        return render(reply.first, openid=msg.openid, account=msg.account)

    async def _dispatch(self, msg: Incoming, deadline: float, once: Once | None = None) -> Reply:
        loop = asyncio.get_running_loop()
        try:
            # The lock wait may use the whole budget and then some: a late answer is still
            # an answer, so wait up to twice the deadline for a user's earlier message.
            return await self._dispatcher.handle(msg, budget=deadline - loop.time() + 5, once=once)
        except Duplicate:
            raise
        except LockTimeout:
            CALLBACK_REQUESTS.labels("busy").inc()
            reply = self._sorry(msg, busy=True)
        except Exception:
            CALLBACK_REQUESTS.labels("error").inc()
            log.exception("handler failed for a %s message", msg.kind)
            reply = self._sorry(msg, busy=False)
        if once is not None and once.is_claimed:
            # Claimed, then failed before or in the last round trip (whose stamp may not have
            # been stored): the user and the retries get this apology.
            await self._dedup.store(once.key, once.stamp(reply).value)
        return reply

    def _sorry(self, msg: Incoming, *, busy: bool) -> Reply:
        _ = translator(self._config.default_locale)
        if busy:
            text = _("Still working on your previous message. Please try again in a moment.")
        else:
            text = _("Sorry, something went wrong on our side. Please try again in a minute.")
        return Reply(Text(text))

    def _settle_late(self, once: Once) -> None:
        """A delivery answered `success` at the deadline has finished: a reply it stamped in
        time is replaced by `success` (it goes as a push, and must not come twice)."""
        if not once.is_claimed:
            return
        if once.plain is not None:
            late = asyncio.create_task(self._stamp_success(once.key))
            self._late.add(late)
            late.add_done_callback(self._late.discard)
        else:
            self._dedup.settled(once.key)

    async def _stamp_success(self, key: str) -> None:
        try:
            await self._dedup.store(key, SUCCESS)
        except Exception:
            log.warning("could not mark a late answer as sent", exc_info=True)

    def _reject(self, exc: CallbackRejected) -> web.Response:
        CALLBACK_REQUESTS.labels(f"rejected_{exc.status}").inc()
        log.warning("callback rejected (%s): %s", exc.status, exc.reason)
        return web.Response(status=exc.status, text=exc.reason)


class _Late:
    """The deadline of one message's passive reply. When it passes (`begin`, from a timer),
    WeChat gets `success` at once, written by a task of its own while the message's handling
    goes on in the request's task; that task then returns the same response (`answered`),
    which aiohttp finds sent. The connection closes after it, so that no next request on it
    waits for the handling to end."""

    __slots__ = ("_once", "_request", "_sending", "_tasks", "response")

    def __init__(self, request: web.Request, once: Once, tasks: set[asyncio.Task[None]]) -> None:
        self._request = request
        self._once = once
        self._tasks = tasks
        self._sending: asyncio.Task[None] | None = None
        self.response: web.StreamResponse | None = None

    def begin(self) -> None:
        CALLBACK_REQUESTS.labels("late").inc()
        # The dispatcher stamps `success` for retries once it sees this.
        self._once.late = True
        response = _xml(SUCCESS)
        response.force_close()
        self.response = response
        self._sending = asyncio.get_running_loop().create_task(self._send(response))
        self._tasks.add(self._sending)
        self._sending.add_done_callback(self._tasks.discard)

    async def _send(self, response: web.StreamResponse) -> None:
        try:
            await response.prepare(self._request)
            await response.write_eof()
        except Exception as exc:  # WeChat hung up: the push still goes
            log.info("could not answer success at the deadline: %s", type(exc).__name__)

    async def answered(self) -> web.StreamResponse:
        """The response sent at the deadline, once it is written."""
        assert self.response is not None and self._sending is not None
        with contextlib.suppress(Exception):
            await asyncio.shield(self._sending)
        return self.response


def _xml(body: str) -> web.Response:
    if body == SUCCESS:
        return web.Response(text=SUCCESS)
    return web.Response(text=body, content_type="application/xml")
