"""The KV contract, over memory and a real Redis."""

from __future__ import annotations

import asyncio

from bot.dispatch.state import Conversation, StateStore
from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV

KEYS = Keyspace("wxkvtest")


async def test_set_get_and_nx(kv: KV) -> None:
    assert await kv.get("k") is None
    assert await kv.set("k", "v1", 10)
    assert await kv.get("k") == b"v1"
    assert not await kv.set("k", "v2", 10, nx=True)
    assert await kv.get("k") == b"v1"
    assert await kv.set("k", b"v3", 10)
    assert await kv.get_many(["k", "missing"]) == [b"v3", None]


async def test_ttl_expires(kv: KV) -> None:
    await kv.set("short", "x", 0.05)
    await asyncio.sleep(0.12)
    assert await kv.get("short") is None
    assert await kv.set("short", "y", 10, nx=True)


async def test_delete_if_equals(kv: KV) -> None:
    await kv.set("lock", "me", 10)
    assert not await kv.delete_if_equals("lock", "someone-else")
    assert await kv.get("lock") == b"me"
    assert await kv.delete_if_equals("lock", "me")
    assert await kv.get("lock") is None


async def test_incr_starts_a_window(kv: KV) -> None:
    assert [await kv.incr("n", 0.1) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.2)
    assert await kv.incr("n", 0.1) == 1


async def test_set_many_and_delete(kv: KV) -> None:
    await kv.set_many({"a": "1", "b": "2"}, 10)
    assert await kv.get_many(["a", "b"]) == [b"1", b"2"]
    await kv.delete("a", "b")
    assert await kv.get_many(["a", "b"]) == [None, None]


async def test_state_store_round_trip_and_ttl(kv: KV) -> None:
    store = StateStore(kv, KEYS, ttl=0.1)
    conv = await store.load("o1")
    assert not conv.active
    conv.goto("bind.id_tail", person_no="S001", note="中文")
    await store.save("o1", conv)
    loaded = await store.load("o1")
    assert loaded.step == "bind.id_tail"
    assert loaded.data == {"person_no": "S001", "note": "中文"}
    await asyncio.sleep(0.2)
    assert not (await store.load("o1")).active  # the conversation timed out


async def test_state_store_finish_clears(kv: KV) -> None:
    store = StateStore(kv, KEYS, ttl=10)
    conv = Conversation()
    conv.goto("x.y", a=1)
    await store.save("o2", conv)
    conv.finish()
    await store.save("o2", conv)
    assert await kv.get(KEYS.state("o2")) is None
    assert await kv.get(KEYS.data("o2")) is None


async def test_corrupted_state_restarts_the_flow(kv: KV) -> None:
    store = StateStore(kv, KEYS, ttl=10)
    await kv.set_many({KEYS.state("o3"): "bind.id_tail", KEYS.data("o3"): "{not json"}, 10)
    conv = await store.load("o3")
    assert conv.step == "bind.id_tail" and conv.data == {}


def test_memory_kv_uses_the_injected_clock() -> None:
    now = [100.0]
    kv = MemoryKV(monotonic=lambda: now[0])

    async def scenario() -> None:
        await kv.set("k", "v", 5)
        now[0] += 4.9
        assert await kv.get("k") == b"v"
        now[0] += 0.2
        assert await kv.get("k") is None

    asyncio.run(scenario())


async def test_leave_writes_every_stamp_with_its_own_ttl(kv: KV) -> None:
    """A message's last round trip: two stamps (a dedup marker, a principal), two writes and
    two deletes, then the lock released."""
    from bot.kv import Stamp

    await kv.set_many({"gone1": "x", "gone2": "y"}, 10)
    assert await kv.set("lock", "me", 10)
    await kv.leave(
        "lock",
        "me",
        {"w1": "v1", "w2": "v2"},
        10,
        ["gone1", "gone2"],
        [Stamp("s1", "one", 0.3), Stamp("s2", "two", 10)],
    )
    assert await kv.get_many(["w1", "w2", "gone1", "gone2", "s1", "s2", "lock"]) == [
        b"v1",
        b"v2",
        None,
        None,
        b"one",
        b"two",
        None,
    ]
    await asyncio.sleep(0.5)  # the first stamp's ttl, not the writes'
    assert await kv.get_many(["w1", "s1", "s2"]) == [b"v1", None, b"two"]


async def test_a_guarded_stamp_is_written_only_over_what_it_expects(kv: KV) -> None:
    """A principal cached in the last round trip: only if its entry still holds what the
    message read (None: nothing), so a drop in between wins."""
    from bot.kv import Stamp

    await kv.set_many({"same": "read", "changed": "read"}, 10)
    await kv.set("changed", "dropped:1", 10)  # another worker's drop, after the read
    await kv.set("appeared", "dropped:2", 10)  # a drop where the message read nothing
    assert await kv.set("lock", "me", 10)
    await kv.leave(
        "lock",
        "me",
        {},
        10,
        [],
        [
            Stamp("same", "new", 10, guard=True, expect=b"read"),
            Stamp("changed", "new", 10, guard=True, expect=b"read"),
            Stamp("absent", "new", 10, guard=True),
            Stamp("appeared", "new", 10, guard=True),
            Stamp("plain", "new", 10),
        ],
    )
    assert await kv.get_many(["same", "changed", "absent", "appeared", "plain", "lock"]) == [
        b"new",
        b"dropped:1",
        b"new",
        b"dropped:2",
        b"new",
        None,
    ]
