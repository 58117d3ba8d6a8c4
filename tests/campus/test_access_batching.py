"""Coalescing concurrent calls: batches form while a call is in flight; failures stay local."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from campus.access.batching import Batcher
from storage.batching import Failed


async def test_a_lone_call_goes_at_once_and_queued_ones_go_together() -> None:
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            await release.wait()  # the first round trip is slow: others queue meanwhile
        return [i * 10 for i in items]

    batcher: Batcher[int, int] = Batcher(run)
    first = asyncio.create_task(batcher.submit(1))
    for _ in range(3):  # the submit, the drain's one extra loop turn, the first batch
        await asyncio.sleep(0)
    assert batches == [[1]]
    rest = [asyncio.create_task(batcher.submit(i)) for i in range(2, 7)]
    await asyncio.sleep(0)
    release.set()
    assert await first == 10
    assert [await t for t in rest] == [20, 30, 40, 50, 60]
    assert batches == [[1], [2, 3, 4, 5, 6]]


async def test_calls_due_in_the_same_loop_turn_go_together() -> None:
    batches: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(run)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # the first call is queued; the others arrive one turn later
    rest = [asyncio.create_task(batcher.submit(i)) for i in (2, 3)]
    assert await asyncio.gather(first, *rest) == [1, 2, 3]
    assert batches == [[1, 2, 3]]


async def test_batches_are_capped() -> None:
    sizes: list[int] = []

    async def run(items: Sequence[int]) -> list[int]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return list(items)

    batcher: Batcher[int, int] = Batcher(run, max_batch=3)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == list(range(8))
    assert max(sizes) == 3 and sum(sizes) == 8


async def test_one_bad_item_fails_only_its_caller() -> None:
    async def run(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        if 13 in items:
            raise ValueError("unlucky")
        return list(items)

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.gather(
        *(batcher.submit(i) for i in (11, 12, 13, 14)), return_exceptions=True
    )
    assert results[:2] == [11, 12] and results[3] == 14
    assert isinstance(results[2], ValueError)


async def test_a_failed_result_fails_its_caller_and_nothing_is_run_again() -> None:
    """A run that wrote part of a batch reports the rest as Failed: no retry of the batch."""
    runs: list[list[int]] = []

    async def run(items: Sequence[int]) -> list[int | Failed]:
        runs.append(list(items))
        await asyncio.sleep(0)
        return [Failed(ValueError(f"no {i}")) if i % 2 else i for i in items]

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.gather(*(batcher.submit(i) for i in (2, 3, 4)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError) and str(results[1]) == "no 3"
    assert sum(len(r) for r in runs) == 3  # each item ran once


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    gate = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int]:
        await gate.wait()
        return list(items)

    batcher: Batcher[int, int] = Batcher(run)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)
    doomed = asyncio.create_task(batcher.submit(2))
    kept = asyncio.create_task(batcher.submit(3))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    assert await first == 1 and await kept == 3
    with pytest.raises(asyncio.CancelledError):
        await doomed


async def test_a_run_that_miscounts_fails_its_callers_instead_of_leaving_them_waiting() -> None:
    async def run(items: Sequence[int]) -> list[int]:
        return [1] if len(items) > 1 else []  # wrong for every batch

    batcher: Batcher[int, int] = Batcher(run)
    results = await asyncio.wait_for(
        asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True), 2
    )
    assert all(isinstance(r, RuntimeError) for r in results)
