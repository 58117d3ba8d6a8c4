"""WeChat followers and who they are: the principal behind each openid, and their language."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import Person, WeChatAccount

# last_seen_at feeds WeChat's 48-hour window; writing it on every message would make each
# message a write, so it is refreshed at most this often (the window is then under-estimated).
_SEEN_GRANULARITY = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Principal:
    openid: str
    locale: str
    person_id: int | None = None
    person_no: str = ""
    name: str = ""
    category: str = ""
    roles: frozenset[str] = frozenset()
    unit_id: int | None = None
    state: str = ""

    @property
    def bound(self) -> bool:
        return self.person_id is not None

    def has_role(self, role: str) -> bool:
        return role in self.roles


class AccountService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], default_locale: str) -> None:
        self._sessions = sessions
        self._default_locale = default_locale

    async def principal(self, openid: str, now: datetime | None = None) -> Principal:
        now = now or datetime.now(UTC)
        stmt = (
            select(WeChatAccount, Person)
            .outerjoin(Person, Person.id == WeChatAccount.person_id)
            .where(WeChatAccount.openid == openid)
        )
        async with self._sessions() as session:
            row = (await session.execute(stmt)).first()
            if row is None:
                session.add(WeChatAccount(openid=openid, last_seen_at=now))
                await _commit_ignoring_race(session)
                return Principal(openid=openid, locale=self._default_locale)
            account, person = row
            if account.last_seen_at is None or now - account.last_seen_at > _SEEN_GRANULARITY:
                await session.execute(
                    update(WeChatAccount)
                    .where(WeChatAccount.openid == openid)
                    .values(last_seen_at=now, subscribed=True)
                )
                await session.commit()
        if person is None:
            return Principal(openid=openid, locale=account.locale or self._default_locale)
        return Principal(
            openid=openid,
            locale=person.locale or account.locale or self._default_locale,
            person_id=person.id,
            person_no=person.person_no,
            name=person.name,
            category=person.category,
            roles=person.role_set,
            unit_id=person.unit_id,
            state=person.state,
        )

    async def set_locale(self, principal: Principal, locale: str) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(WeChatAccount)
                .where(WeChatAccount.openid == principal.openid)
                .values(locale=locale)
            )
            if principal.person_id is not None:
                await session.execute(
                    update(Person).where(Person.id == principal.person_id).values(locale=locale)
                )

    async def set_subscribed(self, openid: str, subscribed: bool) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(WeChatAccount)
                .where(WeChatAccount.openid == openid)
                .values(subscribed=subscribed)
            )


async def _commit_ignoring_race(session: AsyncSession) -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        await session.commit()
    except IntegrityError:
        # Two first messages from one new follower at once: the other insert won.
        await session.rollback()
