"""A guard's duty and a pending exit, over the memory and the Redis state store."""

from __future__ import annotations

from bot.keyspace import Keyspace
from bot.kv import KV, MemoryKV
from campus.access.duty import EXIT_TTL, IN, OUT, GuardDuty

KEYS = Keyspace("wxduty")


async def test_on_duty_exit_once_off_duty(kv: KV) -> None:
    duty = GuardDuty(kv, KEYS, shift=3600)
    assert (await duty.take_post("o_g")).place_id is None
    await duty.start("o_g", 42)
    post = await duty.take_post("o_g")
    assert (post.place_id, post.direction) == (42, IN)
    await duty.mark_exit("o_g")
    assert (await duty.take_post("o_g")).direction == OUT
    assert (await duty.take_post("o_g")).direction == IN  # only the next scan
    assert await duty.end("o_g") == 42
    assert await duty.end("o_g") is None
    assert await duty.place("o_g") is None


async def test_a_self_check_out(kv: KV) -> None:
    duty = GuardDuty(kv, KEYS, shift=3600)
    assert await duty.take_direction("o_p") == IN
    await duty.mark_exit("o_p")
    assert await duty.take_direction("o_p") == OUT
    assert await duty.take_direction("o_p") == IN


async def test_the_shift_and_a_forgotten_exit_lapse() -> None:
    now = [1000.0]
    duty = GuardDuty(MemoryKV(monotonic=lambda: now[0]), KEYS, shift=12 * 3600)
    await duty.start("o_g", 7)
    await duty.mark_exit("o_g")
    now[0] += EXIT_TTL + 1
    assert (await duty.take_post("o_g")).direction == IN
    now[0] += 12 * 3600
    assert (await duty.take_post("o_g")).place_id is None


async def test_a_post_read_with_the_conversation_is_taken_as_read(kv: KV) -> None:
    """The dispatcher reads `post_keys` in its first round trip: take_post uses those values
    (and still consumes the exit) instead of reading again; half of them is not enough."""
    duty = GuardDuty(kv, KEYS, shift=3600)
    await duty.start("o_k", 9)
    await duty.mark_exit("o_k")
    keys = duty.post_keys("o_k")
    known = dict(zip(keys, await kv.get_many(keys), strict=True))
    post = await duty.take_post("o_k", known)
    assert (post.place_id, post.direction) == (9, OUT)
    assert (await duty.take_post("o_k")).direction == IN  # the exit was consumed
    assert (await duty.take_post("o_k", {keys[0]: b"5", keys[1]: None})).place_id == 5
    assert (await duty.take_post("o_k", {keys[0]: b"5"})).place_id == 9
