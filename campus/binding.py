"""Binding a WeChat account to a campus record: person number + last 6 characters of the ID.

Failures are limited per WeChat account and per person (HEALTHBOT_BIND_FAILURES_PER_HOUR).
A wrong ID tail for a real person is audited against that person, and the failure that
reaches the person's limit tells the person responsible for them (their counsellor or host),
who can tell a forgetful student from someone trying to take their record over.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.i18n import Translate
from bot.keyspace import Keyspace
from bot.kv import KV
from campus import audit
from campus.accounts import drop_principal
from campus.identity import mask_name
from campus.notifications import Notifications
from campus.secrets import DataVault
from storage.models import Person, WeChatAccount

PERSON_NO = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ID_TAIL = re.compile(r"^[0-9A-Za-z]{6}$")
FAILURE_WINDOW = 3600


class BindOutcome(Enum):
    BOUND = "bound"
    ALREADY_BOUND = "already_bound"  # this account is bound to this very person
    ACCOUNT_TAKEN = "account_taken"  # this account is bound to someone else: unbind first
    PERSON_TAKEN = "person_taken"  # the person is bound to another WeChat account
    MISMATCH = "mismatch"  # unknown person or wrong ID tail: deliberately not told which
    INACTIVE = "inactive"  # the record has expired or left
    LIMITED = "limited"  # too many failures this hour


@dataclass(frozen=True, slots=True)
class BindResult:
    outcome: BindOutcome
    person_name: str = ""
    locale: str = ""


def looks_like_person_no(text: str) -> bool:
    return bool(PERSON_NO.match(text))


def looks_like_id_tail(text: str) -> bool:
    return bool(ID_TAIL.match(text))


class BindingService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        vault: DataVault,
        kv: KV,
        keys: Keyspace,
        failures_per_hour: int,
        notifications: Notifications | None = None,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._kv = kv
        self._keys = keys
        self._limit = failures_per_hour
        self._notifications = notifications

    def _failure_keys(self, openid: str, person_no: str) -> tuple[str, str]:
        # Neither the openid nor the person number goes into a key in clear.
        return (
            self._keys.bind_failures("openid", self._vault.lookup_hash(openid, "openid"), 0),
            self._keys.bind_failures("person", self._vault.lookup_hash(person_no, "person_no"), 0),
        )

    async def _limited(self, keys: tuple[str, str]) -> bool:
        counts = await self._kv.get_many(list(keys))
        return any(c is not None and int(c) >= self._limit for c in counts)

    async def _fail(self, keys: tuple[str, str]) -> int:
        """Count a failure against the account and the person: the person's count."""
        await self._kv.incr(keys[0], FAILURE_WINDOW)
        return await self._kv.incr(keys[1], FAILURE_WINDOW)

    async def bind(self, openid: str, person_no: str, id_tail: str) -> BindResult:
        person_no = person_no.strip().upper()
        id_tail = id_tail.strip().upper()
        keys = self._failure_keys(openid, person_no)
        if await self._limited(keys):
            return BindResult(BindOutcome.LIMITED)
        try:
            result = await self._bind(openid, person_no, id_tail, keys)
        except IntegrityError:
            # Another account bound this person (or this account) in the same instant.
            return BindResult(BindOutcome.PERSON_TAKEN)
        if result.outcome is BindOutcome.BOUND:
            await drop_principal(self._kv, self._keys, openid)  # the cached one is stale
        return result

    async def _bind(
        self, openid: str, person_no: str, id_tail: str, keys: tuple[str, str]
    ) -> BindResult:
        async with self._sessions.begin() as session:
            person = (
                await session.execute(select(Person).where(Person.person_no == person_no))
            ).scalar_one_or_none()
            if person is None or not self._tail_matches(person, id_tail):
                audit.record(
                    session, f"wechat:{openid}", "bind_failed", person.id if person else None
                )
                failures = await self._fail(keys)
                if person is not None and failures == self._limit:
                    await self._alert(session, person, failures)
                return BindResult(BindOutcome.MISMATCH)
            if person.state in ("expired", "left"):
                return BindResult(BindOutcome.INACTIVE)
            account = await session.get(WeChatAccount, openid, with_for_update=True)
            if account is not None and account.person_id is not None:
                if account.person_id == person.id:
                    return BindResult(BindOutcome.ALREADY_BOUND, person.name, person.locale)
                return BindResult(BindOutcome.ACCOUNT_TAKEN)
            holder = (
                await session.execute(
                    select(WeChatAccount.openid).where(WeChatAccount.person_id == person.id)
                )
            ).scalar_one_or_none()
            if holder is not None:
                return BindResult(BindOutcome.PERSON_TAKEN)
            now = datetime.now(UTC)
            if account is None:
                session.add(
                    WeChatAccount(
                        openid=openid, person_id=person.id, bound_at=now, last_seen_at=now
                    )
                )
            else:
                account.person_id = person.id
                account.bound_at = now
                if account.locale:  # a language picked before binding carries over
                    person.locale = account.locale
            audit.record(session, f"wechat:{openid}", "bind", person.id)
            return BindResult(BindOutcome.BOUND, person.name, person.locale)

    async def _alert(self, session: AsyncSession, person: Person, failures: int) -> None:
        """The person's failures reached the limit: binding to them pauses for the rest of
        the hour; the person responsible for them hears of it (once per window)."""
        audit.record(session, "binding", "bind_limited", person.id, f"{failures} failures")
        if self._notifications is None or person.responsible_id is None:
            return
        name, number = mask_name(person.name), person.person_no

        def text(_: Translate) -> str:
            return _(
                "{count} attempts in the last hour to bind a WeChat account to {name} "
                "({number}) gave a wrong ID number. Binding to this record is paused for an "
                "hour. If it was not {name}, the record may be a target: please check with "
                "them.",
                count=failures,
                name=name,
                number=number,
            )

        now = datetime.now(UTC)
        await self._notifications.enqueue(
            session,
            person_id=person.responsible_id,
            kind="bind_limited",
            text=text,
            key=f"bind_limited:{person.id}:{now:%Y%m%d%H}",
            now=now,
            urgent=False,
        )

    def _tail_matches(self, person: Person, id_tail: str) -> bool:
        id_number = self._vault.decrypt(person.id_cipher)
        return hmac.compare_digest(id_number[-6:].upper().encode(), id_tail.encode())

    async def unbind(self, openid: str) -> bool:
        async with self._sessions.begin() as session:
            account = await session.get(WeChatAccount, openid, with_for_update=True)
            if account is None or account.person_id is None:
                return False
            audit.record(session, f"wechat:{openid}", "unbind", account.person_id)
            await session.execute(
                update(WeChatAccount)
                .where(WeChatAccount.openid == openid)
                .values(person_id=None, bound_at=None)
            )
        await drop_principal(self._kv, self._keys, openid)
        return True
