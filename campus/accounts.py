"""WeChat followers and who they are: the principal behind each openid, and their language.

Every message needs its sender's principal, so it is cached in the KV store next to the
conversation state (one read for both) and dropped whenever binding, registration or language
changes, a registry import changes the person, or their registration expires.

A drop leaves a marker of its own in the cache entry's place, and a message caches the
principal it read from the database only if the entry still holds what the message found
there (a guarded Stamp): a principal read before another worker's change, in this process or
any other, is never cached after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, case, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.keyspace import Keyspace
from bot.kv import KV, Stamp
from campus.secrets import CannotDecrypt, DataVault
from storage import raw
from storage.batching import Batcher, bound_list, one_of
from storage.engine import write_lock
from storage.models import Person, WeChatAccount

log = logging.getLogger(__name__)

# last_seen_at feeds WeChat's 48-hour window; writing it on every message would make each
# message a write, so it is refreshed at most this often (the window is then under-estimated).
SEEN_GRANULARITY = timedelta(minutes=10)
PROFILE_TTL = 300.0
# Refreshes of last_seen_at are written behind, together, this often (and at shutdown); a crash
# loses at most this much of them, which only makes the 48-hour window look shorter.
SEEN_FLUSH = 1.0
SEEN_CHUNK = 500  # rows per transaction: SQLite holds the event loop while it writes


# Every message of a user not seen for a while runs these: built once, with bound parameters.
# The principals wanted at the same moment are read together (see AccountService._load_many).
@functools.cache
def _principals(dialect: str) -> Select[*tuple[Any, ...]]:
    return (
        select(
            WeChatAccount.openid,
            WeChatAccount.locale.label("account_locale"),
            WeChatAccount.last_seen_at,
            Person.id.label("person_id"),
            Person.locale,
            Person.person_no,
            Person.name,
            Person.category,
            Person.roles,
            Person.unit_id,
            Person.state,
        )
        .outerjoin(Person, Person.id == WeChatAccount.person_id)
        .where(one_of(WeChatAccount.openid, "openids", dialect))
    )


_SEEN_AT = bindparam("seen_at", type_=WeChatAccount.last_seen_at.type)
# Only forward: a refresh written behind may reach the database after a newer sighting
# (another worker's, or an unfollow's: see `set_subscribed`), and must not undo it.
_SEEN = (
    update(WeChatAccount)
    .where(
        WeChatAccount.openid == bindparam("who"),
        or_(WeChatAccount.last_seen_at.is_(None), WeChatAccount.last_seen_at < _SEEN_AT),
    )
    .values(last_seen_at=_SEEN_AT, subscribed=True)
)


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


def _dump(principal: Principal, seen: datetime, vault: DataVault | None = None) -> str:
    """The cache entry: JSON, encrypted with the data key when a vault is given (the app
    always gives one: the entry holds a name and a person number)."""
    text = json.dumps(
        {
            "openid": principal.openid,  # a copy under another user's key is not theirs
            "locale": principal.locale,
            "person_id": principal.person_id,
            "person_no": principal.person_no,
            "name": principal.name,
            "category": principal.category,
            "roles": sorted(principal.roles),
            "unit_id": principal.unit_id,
            "state": principal.state,
            "seen": seen.timestamp(),
        },
        ensure_ascii=False,
    )
    return vault.encrypt(text).decode() if vault is not None else text


# Cache entries this process decoded lately: a user's entry stays the same bytes between
# refreshes (SEEN_GRANULARITY), and each of their messages would decode it again. Principal is
# immutable, so the decoded one is shared. Cleared whole when full.
_DECODED: dict[tuple[str, bytes], tuple[Principal, datetime]] = {}
_DECODED_MAX = 4096


def _load(
    openid: str, entry: bytes, vault: DataVault | None = None
) -> tuple[Principal, datetime] | None:
    if not isinstance(entry, bytes):  # the stores give bytes; anything else is not kept
        return _decode(openid, entry, vault)
    key = (openid, entry)
    hit = _DECODED.get(key)
    if hit is None:
        hit = _decode(openid, entry, vault)
        if hit is not None:
            if len(_DECODED) >= _DECODED_MAX:
                _DECODED.clear()
            _DECODED[key] = hit
    return hit


def _decode(
    openid: str, entry: bytes, vault: DataVault | None = None
) -> tuple[Principal, datetime] | None:
    try:
        data = json.loads(vault.decrypt(entry) if vault is not None else entry)
        if data.get("openid", openid) != openid:
            return None
        principal = Principal(
            openid=openid,
            locale=str(data["locale"]),
            person_id=data["person_id"],
            person_no=str(data["person_no"]),
            name=str(data["name"]),
            category=str(data["category"]),
            roles=frozenset(data["roles"]),
            unit_id=data["unit_id"],
            state=str(data["state"]),
        )
        return principal, datetime.fromtimestamp(float(data["seen"]), UTC)
    except (ValueError, KeyError, TypeError, AttributeError, CannotDecrypt):
        return None  # an unreadable entry (a marker, one from before encryption) is a miss


DROPPED = b"dropped:"  # a dropped entry's marker: no JSON, so a cache miss to every reader
# How long a marker stays: longer than any message runs (one that read nothing before the drop
# must still find the marker when it leaves). Redis must not evict it (docs/deploy.md).
DROP_TTL = 3600.0


async def drop_principal(kv: KV, keys: Keyspace, openid: str) -> None:
    """Drop the cached principal of `openid`, once a change to it is committed: a marker no
    other drop writes, so a message that read the entry before it caches nothing."""
    await kv.set(keys.profile(openid), DROPPED + secrets.token_hex(8).encode(), DROP_TTL)


async def drop_principals_of(
    kv: KV, keys: Keyspace, sessions: async_sessionmaker[AsyncSession], person_ids: Sequence[int]
) -> int:
    """Drop the cached principals of the accounts bound to `person_ids`, once a change to
    those persons is committed (a registry import, registrations expiring): how many
    accounts."""
    openids: list[str] = []
    async with sessions() as session:
        for start in range(0, len(person_ids), SEEN_CHUNK):
            found = await session.execute(
                select(WeChatAccount.openid).where(
                    WeChatAccount.person_id.in_(list(person_ids[start : start + SEEN_CHUNK]))
                )
            )
            openids.extend(found.scalars())
    for start in range(0, len(openids), SEEN_CHUNK):
        await asyncio.gather(
            *(drop_principal(kv, keys, openid) for openid in openids[start : start + SEEN_CHUNK])
        )
    return len(openids)


class AccountService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        default_locale: str,
        kv: KV | None = None,
        keys: Keyspace | None = None,
        vault: DataVault | None = None,
    ) -> None:
        self._sessions = sessions
        self._vault = vault
        self._default_locale = default_locale
        self._kv = kv
        self._keys = keys
        self._engine: AsyncEngine = sessions.kw["bind"]
        self._dialect = self._engine.dialect.name
        # The batch's read on the driver's connection (storage/raw.py), where it can run.
        self._raw_read = (
            raw.Statement(_principals(self._dialect), self._engine.dialect)
            if raw.supported(self._engine)
            else None
        )
        self._reads: Batcher[tuple[str, datetime], Any] = Batcher(
            self._load_many, name="principals"
        )
        self._seen: dict[str, datetime] = {}  # last_seen_at refreshes not yet written
        self._flusher: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()  # a chunk of refreshes being written (see set_subscribed)

    def profile_key(self, openid: str) -> str | None:
        """Where the cached principal lives, so the dispatcher can read it with the state."""
        return self._keys.profile(openid) if self._keys is not None else None

    async def principal(
        self, openid: str, now: datetime | None = None, *, cached: bytes | None = None
    ) -> Principal:
        principal, fresh = await self.lookup(openid, now, cached=cached)
        if fresh is not None and self._kv is not None:
            await self._kv.set(fresh.key, fresh.value, fresh.ttl)
        return principal

    async def lookup(
        self, openid: str, now: datetime | None = None, *, cached: bytes | None = None
    ) -> tuple[Principal, Stamp | None]:
        """The principal, from `cached` (its cache entry) when recent enough; else from the
        database, with the cache entry to write: the dispatcher writes it in the message's
        last round trip, if the entry still holds `cached` then (no drop came meanwhile)."""
        now = now or datetime.now(UTC)
        if cached is not None:
            hit = _load(openid, cached, self._vault)
            if hit is not None and now - hit[1] <= SEEN_GRANULARITY:
                return hit[0], None
        principal = await self._from_database(openid, now)
        key = self.profile_key(openid)
        if self._kv is None or key is None:
            return principal, None
        return principal, Stamp(
            key, _dump(principal, now, self._vault), PROFILE_TTL, guard=True, expect=cached
        )

    async def _from_database(self, openid: str, now: datetime) -> Principal:
        row = await self._reads.submit((openid, now))
        if row is None:
            async with self._sessions() as session:
                session.add(WeChatAccount(openid=openid, last_seen_at=now))
                try:
                    await session.commit()
                except IntegrityError:
                    # Two first messages from one new follower at once: the other insert won.
                    await session.rollback()
            return Principal(openid=openid, locale=self._default_locale)
        if row.person_id is None:
            return Principal(openid=openid, locale=row.account_locale or self._default_locale)
        return Principal(
            openid=openid,
            locale=row.locale or row.account_locale or self._default_locale,
            person_id=row.person_id,
            person_no=row.person_no,
            name=row.name,
            category=row.category,
            roles=frozenset(r for r in (row.roles or "").split(";") if r),
            unit_id=row.unit_id,
            state=row.state,
        )

    async def _load_many(self, asks: Sequence[tuple[str, datetime]]) -> list[Any]:
        """The accounts asked for at the same moment, in one read. Those not seen for
        SEEN_GRANULARITY get their last_seen_at refreshed, written behind (see `flush`)."""
        openids = bound_list(sorted({openid for openid, _ in asks}), self._dialect)
        if self._raw_read is not None:
            async with raw.transaction(self._engine, reads=True) as tx:
                rows = await tx.fetch(self._raw_read, {"openids": openids})
            found = {row.openid: row for row in rows}
        else:
            async with self._engine.connect() as conn:
                result = await conn.execute(_principals(self._dialect), {"openids": openids})
                found = {row.openid: row for row in result}
        for openid, now in asks:
            row = found.get(openid)
            if row is None:
                continue
            if row.last_seen_at is None or now - row.last_seen_at > SEEN_GRANULARITY:
                earlier = self._seen.get(openid)
                self._seen[openid] = now if earlier is None else max(now, earlier)
        if self._seen and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush_later())
        return [found.get(openid) for openid, _ in asks]

    async def _flush_later(self) -> None:
        await asyncio.sleep(SEEN_FLUSH)
        await self.flush()

    async def flush(self) -> None:
        """Write the pending last_seen_at refreshes, SEEN_CHUNK to a transaction. A chunk that
        fails is kept for the next flush (unless a newer refresh came meanwhile)."""
        while self._seen:
            async with self._writing:
                chunk = dict(itertools.islice(self._seen.items(), SEEN_CHUNK))
                for openid in chunk:
                    del self._seen[openid]
                rows = [{"who": openid, "seen_at": at} for openid, at in chunk.items()]
                try:
                    async with write_lock(self._engine), self._engine.begin() as conn:
                        await conn.execute(_SEEN, rows)
                except Exception as exc:
                    log.warning(
                        "last_seen_at of %d users not written yet: %s", len(rows), type(exc)
                    )
                    for openid, at in chunk.items():
                        self._seen.setdefault(openid, at)
                    return  # the next principal read schedules another flush
                except BaseException:
                    # Cancelled (close() at shutdown): the chunk is pending again, for close().
                    for openid, at in chunk.items():
                        self._seen.setdefault(openid, at)
                    raise
            await asyncio.sleep(0)  # let messages run between chunks

    async def close(self) -> None:
        """At shutdown: write what is pending."""
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()

    async def forget(self, openid: str) -> None:
        """Drop the cached principal after a change to the account or its person."""
        if self._kv is not None and self._keys is not None:
            await drop_principal(self._kv, self._keys, openid)

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
        await self.forget(principal.openid)

    async def set_subscribed(self, openid: str, subscribed: bool) -> None:
        """A refresh of the account still to be written (it marks the account subscribed) is
        written here, with the change, instead of after it: an unfollow stays. An unfollow
        also moves last_seen_at to now, so that a refresh another worker queued before it
        finds a newer sighting and changes nothing (refreshes only move forward)."""
        async with self._writing:  # not while a chunk holding the account is being written
            values: dict[str, Any] = {"subscribed": subscribed}
            pending = self._seen.pop(openid, None)
            if not subscribed:
                pending = datetime.now(UTC)
            if pending is not None:
                last, at = (
                    WeChatAccount.last_seen_at,
                    literal(pending, WeChatAccount.last_seen_at.type),
                )
                values["last_seen_at"] = case((or_(last.is_(None), last < at), at), else_=last)
            async with self._sessions.begin() as session:
                await session.execute(
                    update(WeChatAccount).where(WeChatAccount.openid == openid).values(values)
                )
