"""The per-user queue inside one process (UserLocks.local): order, time-outs, cancellations."""

from __future__ import annotations

import asyncio

import pytest

from bot.dispatch.locks import LockTimeout, UserLocks
from bot.keyspace import Keyspace
from bot.kv import MemoryKV


def _locks() -> UserLocks:
    return UserLocks(MemoryKV(), Keyspace("wxlocktest"))


async def test_one_user_is_served_in_arrival_order_and_others_are_not_held_up() -> None:
    locks = _locks()
    order: list[str] = []

    async def message(openid: str, name: str, hold: float) -> None:
        async with locks.local(openid, timeout=5):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    first = asyncio.create_task(message("u1", "a", 0.03))
    await asyncio.sleep(0)
    rest = [
        asyncio.create_task(message("u1", "b", 0.01)),
        asyncio.create_task(message("u1", "c", 0)),
        asyncio.create_task(message("u2", "x", 0)),
    ]
    await asyncio.gather(first, *rest)
    assert order.index("x out") < order.index("a out")  # another user does not wait
    assert [step for step in order if step[0] != "x"] == [
        "a in", "a out", "b in", "b out", "c in", "c out"
    ]  # fmt: skip
    assert locks._local == {}  # nothing left behind


async def test_a_message_that_waits_too_long_gets_lock_timeout_and_leaves_the_queue() -> None:
    locks = _locks()
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.local("u1", timeout=5):
            held.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await held.wait()
    with pytest.raises(LockTimeout):
        async with locks.local("u1", timeout=0.01):
            raise AssertionError("got the turn while another message held it")
    assert len(locks._local["u1"]) == 0  # the timed-out waiter is gone
    release.set()
    await task
    async with locks.local("u1", timeout=0.1):  # the user's queue still works
        pass
    assert locks._local == {}


async def _queue_of_three(
    locks: UserLocks, served: list[str]
) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    """Messages a, b, c of one user: a holds the turn until the event is set, b and c wait."""
    release = asyncio.Event()

    async def message(name: str) -> None:
        async with locks.local("u1", timeout=5):
            served.append(name)
            if name == "a":
                await release.wait()

    a = asyncio.create_task(message("a"))
    await asyncio.sleep(0)
    b = asyncio.create_task(message("b"))
    c = asyncio.create_task(message("c"))
    await asyncio.sleep(0)
    return release, [a, b, c]


async def test_a_waiter_cancelled_while_queued_is_skipped() -> None:
    locks, served = _locks(), list[str]()
    release, (a, b, c) = await _queue_of_three(locks, served)
    b.cancel()
    release.set()
    await asyncio.gather(a, c)
    assert b.cancelled()
    assert served == ["a", "c"]
    assert locks._local == {}


async def test_a_waiter_cancelled_just_after_being_handed_the_turn_passes_it_on() -> None:
    locks, served = _locks(), list[str]()
    release, (a, b, c) = await _queue_of_three(locks, served)
    release.set()
    await asyncio.sleep(0)  # a runs to its end and hands the turn to b
    assert a.done() and not b.done()
    b.cancel()  # b gives up before it resumes: the turn must go on to c
    await asyncio.wait_for(c, timeout=1)
    assert b.cancelled()
    assert served == ["a", "c"]
    assert locks._local == {}


async def test_an_error_inside_releases_the_turn() -> None:
    locks = _locks()
    with pytest.raises(RuntimeError):
        async with locks.local("u1", timeout=1):
            raise RuntimeError("handler failed")
    async with locks.local("u1", timeout=0.1):
        pass
    assert locks._local == {}
