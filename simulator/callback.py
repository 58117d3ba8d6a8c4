"""Posting callbacks to the bot as WeChat does: signed, encrypted in safe mode, 5 s, retried."""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from typing import Literal

import aiohttp

from simulator.clock import Clock
from simulator.config import SimulatorConfig
from simulator.signing import Envelope, new_nonce, signature
from simulator.wire import Reply, ReplyError, build_xml, parse_reply

# reply: something to show; empty: "success" or nothing; failed: every attempt timed out or
# errored; invalid: an answer WeChat cannot show. The last two show the user "unavailable".
Outcome = Literal["reply", "empty", "failed", "invalid"]


@dataclass(frozen=True, slots=True)
class Delivery:
    outcome: Outcome
    attempts: int
    reply: Reply | None = None
    detail: str = ""
    elapsed: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome,
            "attempts": self.attempts,
            "detail": self.detail,
            "elapsed": round(self.elapsed, 3),
        }


class _AttemptFailed(Exception):
    pass


class CallbackClient:
    def __init__(self, config: SimulatorConfig, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self.timeout = 5.0
        self.retries = 3  # after the first attempt, as WeChat does
        self._envelope = (
            Envelope(config.token, config.aes_key, config.appid) if config.aes_key else None
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(headers={"User-Agent": "Mozilla/4.0"})

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the simulator app has not started")
        return self._session

    async def deliver(self, xml: str, openid: str) -> Delivery:
        """Send one message, retrying the same XML (same MsgId/CreateTime) after failures."""
        started = time.monotonic()
        detail = ""
        for attempt in range(1, self.retries + 2):
            try:
                body = await self._attempt(xml, openid)
            except _AttemptFailed as exc:
                detail = str(exc)
                continue
            elapsed = time.monotonic() - started
            try:
                reply = self._read(body)
            except ReplyError as exc:
                return Delivery("invalid", attempt, detail=str(exc), elapsed=elapsed)
            outcome: Outcome = "empty" if reply is None else "reply"
            return Delivery(outcome, attempt, reply, elapsed=elapsed)
        elapsed = time.monotonic() - started
        return Delivery("failed", self.retries + 1, detail=detail, elapsed=elapsed)

    async def _attempt(self, xml: str, openid: str) -> bytes:
        timestamp, nonce = str(int(self._clock.time())), new_nonce()
        query = {
            "signature": signature(self._config.token, timestamp, nonce),
            "timestamp": timestamp,
            "nonce": nonce,
            "openid": openid,
        }
        body = xml
        if self._envelope is not None:
            encrypted = self._envelope.seal(xml)
            query["encrypt_type"] = "aes"
            query["msg_signature"] = signature(self._config.token, timestamp, nonce, encrypted)
            body = build_xml([("ToUserName", self._config.gh_id), ("Encrypt", encrypted)])
        url = _with_query(self._config.callback_url, query)
        try:
            async with self.session.post(
                url,
                data=body.encode(),
                headers={"Content-Type": "text/xml"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                text = await resp.read()
                if resp.status != 200:
                    raise _AttemptFailed(f"HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _AttemptFailed(f"{type(exc).__name__}: {exc}") from exc
        return text

    def _read(self, raw: bytes) -> Reply | None:
        try:
            body = raw.decode()
        except UnicodeDecodeError as exc:
            raise ReplyError("reply is not UTF-8") from exc
        if body.strip() in ("", "success"):
            return None
        plaintext = self._envelope.open_reply(body) if self._envelope is not None else body
        return parse_reply(plaintext)


def _with_query(url: str, query: dict[str, str]) -> str:
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + separator + urllib.parse.urlencode(query)
