"""Pass-code cards for the chat: issue a code, render its PNG, upload it as temporary media.

The upload's media id is kept in the KV store with the code, and reused while the code is
valid (and the person's status unchanged), so asking again does not upload again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.clock import Clock
from bot.i18n import N_, translator
from bot.keyspace import Keyspace
from bot.kv import KV
from bot.wechat.errors import WeChatError
from campus.access.artwork import CardText, render_pass_card
from campus.access.passes import NoCode, PassService
from campus.access.token import PassClaims
from campus.identity import mask_name

log = logging.getLogger(__name__)

# A cached code with less than this left is replaced: the holder needs time to walk to the gate.
MIN_LEFT = 120

STATUS_NAMES = {"green": N_("green code"), "yellow": N_("yellow code"), "red": N_("red code")}


class Uploader(Protocol):
    async def upload_image(self, data: bytes, filename: str = "image.png") -> str: ...


class CardUnavailable(Exception):
    """The image could not be uploaded (WeChat unreachable or refusing): try again later."""


@dataclass(frozen=True, slots=True)
class PassCard:
    media_id: str
    masked_name: str
    status: str
    issued: int  # Unix seconds
    expires: int


class PassCards:
    def __init__(
        self,
        passes: PassService,
        uploader: Uploader,
        kv: KV,
        keys: Keyspace,
        tz: ZoneInfo,
        clock: Clock,
    ) -> None:
        self._passes = passes
        self._uploader = uploader
        self._kv = kv
        self._keys = keys
        self._tz = tz
        self._clock = clock

    def local(self, unix: float) -> datetime:
        return datetime.fromtimestamp(unix, UTC).astimezone(self._tz)

    async def card(self, person_id: int, locale: str) -> PassCard | NoCode:
        holder = await self._passes.holder(person_id)
        if holder is None:
            return NoCode.UNKNOWN
        now = self._clock.time()
        refusal = holder.refusal(self.local(now).date())
        if refusal is not None:
            return refusal
        key = self._keys.pass_card(person_id, locale)
        cached = _load(await self._kv.get(key))
        if (
            cached is not None
            and cached.status == holder.status
            and cached.expires - now >= MIN_LEFT
        ):
            return cached
        issued = await self._passes.issue(holder, self.local(now).date())
        if isinstance(issued, NoCode):
            return issued
        claims = issued.claims
        masked = mask_name(holder.name)
        png = await asyncio.to_thread(
            render_pass_card, issued.token, claims.status, self._card_text(claims, masked, locale)
        )
        try:
            media_id = await self._uploader.upload_image(png, "pass.png")
        except WeChatError as exc:
            log.warning("pass-code image not uploaded: %s", type(exc).__name__)
            raise CardUnavailable from exc
        card = PassCard(media_id, masked, claims.status, claims.issued, claims.expires)
        await self._kv.set(key, _dump(card), max(1, claims.expires - now))
        return card

    def _card_text(self, claims: PassClaims, masked: str, locale: str) -> CardText:
        _ = translator(locale)
        issued, expires = self.local(claims.issued), self.local(claims.expires)
        minutes = max(1, (claims.expires - claims.issued) // 60)
        return CardText(
            status_label=_(STATUS_NAMES[claims.status]),
            name=masked,
            lines=(
                _("Issued {time}", time=f"{issued:%Y-%m-%d %H:%M}"),
                _("Valid until {time} ({minutes} min)", time=f"{expires:%H:%M}", minutes=minutes),
            ),
        )


def _dump(card: PassCard) -> str:
    return json.dumps(
        {
            "media_id": card.media_id,
            "name": card.masked_name,
            "status": card.status,
            "issued": card.issued,
            "expires": card.expires,
        }
    )


def _load(raw: bytes | None) -> PassCard | None:
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return PassCard(
            str(data["media_id"]),
            str(data["name"]),
            str(data["status"]),
            int(data["issued"]),
            int(data["expires"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # a damaged entry: make a new card
