"""Person pass codes: who may get one, issuing it, and checking a scanned one's signature."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.clock import Clock
from campus.access.issued import IssuedCodes
from campus.access.keys import KeyRing
from campus.access.token import (
    PassClaims,
    Problem,
    TokenRejected,
    check_signature,
    check_time,
    parse,
    sign,
)
from storage.models import Person

CLOCK_SKEW = 60  # seconds a code may appear to come from the future (phones and servers drift)


class NoCode(Enum):
    UNKNOWN = "unknown"
    PENDING = "pending"  # a registration not yet confirmed by the responsible person
    INACTIVE = "inactive"  # expired or left, or past valid_until


@dataclass(frozen=True, slots=True)
class Holder:
    """The live facts a pass code is made from."""

    person_id: int
    name: str
    status: str
    state: str
    valid_until: date | None

    def refusal(self, today: date) -> NoCode | None:
        if self.state == "pending":
            return NoCode.PENDING
        if self.state != "active" or (self.valid_until is not None and self.valid_until < today):
            return NoCode.INACTIVE
        return None


@dataclass(frozen=True, slots=True)
class IssuedPass:
    token: str
    claims: PassClaims


class PassService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        keys: KeyRing,
        clock: Clock,
        *,
        validity: int,
        issued: IssuedCodes | None = None,
    ) -> None:
        """`issued`: where codes are put on record when issued, so that this campus's scans
        recognise them without a signature check (campus/access/issued.py)."""
        self._sessions = sessions
        self.keys = keys
        self._clock = clock
        self.validity = validity
        self.issued = issued

    async def holder(self, person_id: int) -> Holder | None:
        stmt = select(
            Person.id, Person.name, Person.status, Person.state, Person.valid_until
        ).where(Person.id == person_id)
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
        if row is None:
            return None
        return Holder(row.id, row.name, row.status, row.state, row.valid_until)

    async def issue(self, holder: Holder, today: date) -> IssuedPass | NoCode:
        refusal = holder.refusal(today)
        if refusal is not None:
            return refusal
        key = await self.keys.signer()
        now = self._clock.time()
        issued = int(now)
        claims = PassClaims(
            key.key_id, holder.person_id, holder.status, issued, issued + self.validity
        )
        token = sign(claims, key.private_key, self.keys.campus)
        if self.issued is not None:
            await self.issued.record(token, claims, now)
        return IssuedPass(token, claims)

    def record_key(self, text: str) -> str | None:
        """The store entry that would hold a scanned text's issue record, for the scan's
        first round trip (None: no record to read, `verify` checks the signature)."""
        return None if self.issued is None else self.issued.key(text)

    async def verify(
        self, token: str, known: Mapping[str, bytes | None] | None = None
    ) -> PassClaims:
        """The claims of a genuine, unexpired code of this campus; else TokenRejected.

        `known`: store entries read already, which may hold the code's issue record
        (`record_key`); a code on record for its person is not checked by its signature
        again, one that is not, is."""
        unverified = parse(token)
        claims = unverified.claims
        key = await self.keys.verifier(claims.key_id)
        if key is None:
            raise TokenRejected(Problem.UNKNOWN_KEY)
        if known is None or self.issued is None or not self.issued.vouches(token, claims, known):
            check_signature(unverified, key.verifier, self.keys.campus)
        if not key.covers(claims.expires):
            raise TokenRejected(Problem.RETIRED_KEY)
        check_time(claims, self._clock.time(), CLOCK_SKEW)
        return claims

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)
