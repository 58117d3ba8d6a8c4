"""The principal: loaded from the database, cached, and last-seen refreshed sparingly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import campus.accounts as accounts_module
from bot.keyspace import Keyspace
from bot.kv import MemoryKV
from campus.accounts import (
    SEEN_FLUSH,
    SEEN_GRANULARITY,
    AccountService,
    Principal,
    _dump,
    _load,
)
from campus.binding import BindingService, BindOutcome
from campus.secrets import DataVault
from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import WeChatAccount
from tests.support import DATA_KEY, id_tail, seed_campus

NOW = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/db.sqlite"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await upgrade(engine, "heads")
    yield engine
    await engine.dispose()


async def _seen(engine: AsyncEngine, openid: str) -> datetime | None:
    async with session_factory(engine)() as session:
        return (
            await session.execute(
                select(WeChatAccount.last_seen_at).where(WeChatAccount.openid == openid)
            )
        ).scalar_one()


async def _campus(
    engine: AsyncEngine,
) -> tuple[async_sessionmaker[AsyncSession], MemoryKV, Keyspace, BindingService]:
    """The seeded campus: its sessions, an in-memory KV, the keyspace and binding."""
    sessions = session_factory(engine)
    kv, keys = MemoryKV(), Keyspace("wxacc")
    await seed_campus(sessions, DataVault.from_setting(DATA_KEY))
    return (
        sessions,
        kv,
        keys,
        BindingService(sessions, DataVault.from_setting(DATA_KEY), kv, keys, 5),
    )


async def _unseen_guest(
    engine: AsyncEngine, openid: str
) -> tuple[async_sessionmaker[AsyncSession], MemoryKV, Keyspace]:
    """S001 bound to `openid`, last seen three days before NOW."""
    sessions, kv, keys, binding = await _campus(engine)
    assert (await binding.bind(openid, "S001", id_tail("S001"))).outcome is BindOutcome.BOUND
    async with sessions.begin() as session:
        await session.execute(
            update(WeChatAccount)
            .where(WeChatAccount.openid == openid)
            .values(last_seen_at=NOW - timedelta(days=3))
        )
    return sessions, kv, keys


async def test_a_bound_principal_and_its_last_seen(engine: AsyncEngine) -> None:
    sessions, kv, keys, binding = await _campus(engine)
    result = await binding.bind("o_acc", "S001", id_tail("S001"))
    assert result.outcome is BindOutcome.BOUND
    accounts = AccountService(sessions, "zh_CN", kv, keys)

    # Long unseen: the database is read and last_seen_at moves to now.
    async with sessions() as session:
        await session.execute(
            update(WeChatAccount)
            .where(WeChatAccount.openid == "o_acc")
            .values(last_seen_at=NOW - timedelta(days=3))
        )
        await session.commit()
    user = await accounts.principal("o_acc", NOW)
    assert (user.person_no, user.bound, user.category) == ("S001", True, "student")
    # Written behind: within SEEN_FLUSH, or at once by flush() (and close(), at shutdown).
    assert await _seen(engine, "o_acc") == NOW - timedelta(days=3)
    await asyncio.sleep(SEEN_FLUSH)
    for _ in range(100):  # by itself, a moment after SEEN_FLUSH (however busy the machine)
        if await _seen(engine, "o_acc") == NOW:
            break
        await asyncio.sleep(0.05)
    assert await _seen(engine, "o_acc") == NOW

    # Within the granularity: the cached principal answers and nothing is written.
    cached = await kv.get(keys.profile("o_acc"))
    assert cached is not None
    later = NOW + SEEN_GRANULARITY / 2
    assert (await accounts.principal("o_acc", later, cached=cached)).person_no == "S001"
    await accounts.flush()
    assert await _seen(engine, "o_acc") == NOW

    # A stranger's first message creates their account, unbound.
    stranger = await accounts.principal("o_new", NOW)
    assert not stranger.bound and stranger.locale == "zh_CN"
    assert await _seen(engine, "o_new") == NOW


async def test_principals_asked_for_together_are_read_and_refreshed_together(
    engine: AsyncEngine,
) -> None:
    """Concurrent first messages: a bound user long unseen, one seen a minute ago, a new
    follower, and the same user twice; one read answers all, each gets their own principal."""
    sessions, kv, keys, binding = await _campus(engine)
    for openid, no in (("o_old", "S001"), ("o_recent", "S002")):
        assert (await binding.bind(openid, no, id_tail(no))).outcome is BindOutcome.BOUND
    async with sessions.begin() as session:
        for openid, seen in (
            ("o_old", NOW - timedelta(days=3)),
            ("o_recent", NOW - timedelta(minutes=1)),
        ):
            await session.execute(
                update(WeChatAccount)
                .where(WeChatAccount.openid == openid)
                .values(last_seen_at=seen)
            )
    accounts = AccountService(sessions, "zh_CN", kv, keys)
    old, recent, new, again = await asyncio.gather(
        accounts.principal("o_old", NOW),
        accounts.principal("o_recent", NOW),
        accounts.principal("o_new", NOW),
        accounts.principal("o_old", NOW),
    )
    await accounts.close()
    assert old.person_no == again.person_no == "S001" and recent.person_no == "S002"
    assert new.person_id is None and new.locale == "zh_CN"
    assert await _seen(engine, "o_old") == NOW  # refreshed
    assert await _seen(engine, "o_recent") == NOW - timedelta(minutes=1)  # left alone
    assert await _seen(engine, "o_new") == NOW  # created


async def test_last_seen_refreshes_survive_a_failed_write(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions, kv, keys = await _unseen_guest(engine, "o_x")
    accounts = AccountService(sessions, "zh_CN", kv, keys)
    await accounts.principal("o_x", NOW)
    import campus.accounts

    def broken(_engine: object) -> object:
        raise ConnectionError("database away")

    with monkeypatch.context() as patched:
        patched.setattr(campus.accounts, "write_lock", broken)
        await accounts.flush()  # fails, keeps the refresh
    assert await _seen(engine, "o_x") == NOW - timedelta(days=3)
    await accounts.close()
    assert await _seen(engine, "o_x") == NOW


async def _subscribed(engine: AsyncEngine, openid: str) -> bool | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                select(WeChatAccount.subscribed).where(WeChatAccount.openid == openid)
            )
        ).scalar_one_or_none()


async def test_an_unfollow_is_not_undone_by_a_refresh_written_behind(
    engine: AsyncEngine,
) -> None:
    """The unsubscribe event reads the principal (queuing a refresh of a user long unseen),
    then its handler marks the account unsubscribed: the refresh written afterwards must not
    mark it subscribed again."""
    sessions, kv, keys = await _unseen_guest(engine, "o_bye")
    accounts = AccountService(sessions, "zh_CN", kv, keys)
    await accounts.principal("o_bye", NOW)  # the unsubscribe event's principal
    await accounts.set_subscribed("o_bye", False)  # its handler
    await accounts.close()
    assert await _subscribed(engine, "o_bye") is False
    seen = await _seen(engine, "o_bye")
    assert seen is not None and seen >= NOW


async def test_a_refresh_never_moves_last_seen_back(engine: AsyncEngine) -> None:
    """Two workers refresh one user: the one holding the older sighting writes last."""
    sessions, kv, keys = await _unseen_guest(engine, "o_two")
    first, second = (AccountService(sessions, "zh_CN", kv, keys) for _ in range(2))
    await first.principal("o_two", NOW)
    await second.principal("o_two", NOW + timedelta(minutes=1))
    await second.close()
    await first.close()
    assert await _seen(engine, "o_two") == NOW + timedelta(minutes=1)


async def test_close_during_a_flush_keeps_its_refreshes(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shutdown while the refreshes written behind wait for another writer: close() still
    writes them."""
    import campus.accounts

    sessions, kv, keys = await _unseen_guest(engine, "o_end")
    monkeypatch.setattr(campus.accounts, "SEEN_FLUSH", 0.0)
    accounts = AccountService(sessions, "zh_CN", kv, keys)
    async with engine.connect() as blocker:
        # Another writer holds the row (and, on SQLite, the database) meanwhile.
        await blocker.execute(
            update(WeChatAccount).where(WeChatAccount.openid == "o_end").values(locale="en")
        )
        await accounts.principal("o_end", NOW)
        await asyncio.sleep(0.2)  # the flush has begun and waits for the blocker
        closing = asyncio.create_task(accounts.close())
        await asyncio.sleep(0.2)
        await blocker.rollback()
    await asyncio.wait_for(closing, 15)
    assert await _seen(engine, "o_end") == NOW


async def test_an_unfollow_in_one_worker_is_not_undone_by_another_workers_refresh(
    engine: AsyncEngine,
) -> None:
    """Worker B read the principal (a refresh queued) just before the user unfollowed, and
    worker A handles the unfollow: B's refresh, written later, must not re-subscribe."""
    sessions, kv, keys = await _unseen_guest(engine, "o_gone")
    worker_a, worker_b = (AccountService(sessions, "zh_CN", kv, keys) for _ in range(2))
    await worker_b.principal("o_gone", NOW)
    await worker_a.set_subscribed("o_gone", False)
    await worker_b.close()
    await worker_a.close()
    assert await _subscribed(engine, "o_gone") is False


def test_a_cache_entry_is_decoded_once_and_a_changed_entry_is_decoded_anew() -> None:
    """The process keeps the principals it decoded from cache entries lately, by the entry's
    bytes: the same entry gives the same principal without decoding again; an entry written
    since (a new role, say) is other bytes, so it is never answered with the old principal."""
    guard = Principal(openid="o_memo", locale="en", person_id=7, roles=frozenset({"guard"}))
    entry = _dump(guard, NOW).encode()
    first = _load("o_memo", entry)
    assert first is not None and first[0] == guard and first[1] == NOW
    again = _load("o_memo", bytes(entry))  # equal bytes, another object: from the memo
    assert again is not None and again[0] is first[0]

    demoted = _load("o_memo", _dump(replace(guard, roles=frozenset()), NOW).encode())
    assert demoted is not None and demoted[0].roles == frozenset()
    assert _load("o_other", entry) is None  # another user's entry is not theirs
    assert ("o_other", entry) not in accounts_module._DECODED

    assert _load("o_memo", b"{not json") is None
    assert ("o_memo", b"{not json") not in accounts_module._DECODED

    for n in range(accounts_module._DECODED_MAX + 10):  # bounded
        assert _load(f"o_{n}", _dump(replace(guard, openid=f"o_{n}"), NOW).encode())
    assert len(accounts_module._DECODED) <= accounts_module._DECODED_MAX


async def test_a_drop_leaves_a_marker_that_only_a_later_read_may_replace(
    engine: AsyncEngine,
) -> None:
    """Binding drops the cached principal with a marker of its own; the principal read from
    the database afterwards is to be cached only over that very marker."""
    sessions, kv, keys, binding = await _campus(engine)
    accounts = AccountService(sessions, "zh_CN", kv, keys)
    before, stamp = await accounts.lookup("o_drop", NOW)  # not bound yet: nothing cached
    assert not before.bound
    assert stamp is not None and (stamp.guard, stamp.expect) == (True, None)

    assert (await binding.bind("o_drop", "S001", id_tail("S001"))).outcome is BindOutcome.BOUND
    marker = await kv.get(keys.profile("o_drop"))
    assert marker is not None and marker.startswith(accounts_module.DROPPED)
    after, stamp = await accounts.lookup("o_drop", NOW, cached=marker)  # a miss: the database
    assert after.person_no == "S001"
    assert stamp is not None and (stamp.guard, stamp.expect) == (True, marker)

    await accounts.forget("o_drop")  # a second drop: a marker of its own
    again = await kv.get(keys.profile("o_drop"))
    assert again is not None and again.startswith(accounts_module.DROPPED) and again != marker


async def test_a_cached_principal_is_encrypted_and_only_its_own_users(
    engine: AsyncEngine,
) -> None:
    """With the data key (as the app runs), the cache entry shows no name or person number,
    and a copy under another user's key is a miss there (security review, G2)."""
    sessions, kv, keys, binding = await _campus(engine)
    vault = DataVault.from_setting(DATA_KEY)
    accounts = AccountService(sessions, "zh_CN", kv, keys, vault)
    assert (await binding.bind("o_own", "S001", id_tail("S001"))).outcome is BindOutcome.BOUND
    user, stamp = await accounts.lookup("o_own", NOW)
    assert stamp is not None and user.person_no == "S001"
    entry = stamp.value.encode() if isinstance(stamp.value, str) else stamp.value
    assert b"S001" not in entry and user.name.encode() not in entry
    cached, fresh = await accounts.lookup("o_own", NOW, cached=entry)
    assert fresh is None and cached == user  # a hit
    other, fresh = await accounts.lookup("o_other", NOW, cached=entry)
    assert fresh is not None and not other.bound  # read from the database instead
    assert _load("o_own", _dump(user, NOW).encode(), vault) is None  # clear text: a miss
