"""Fault injection and call counting, from Python and through POST api/_control."""

from __future__ import annotations

import time

from simulator.faults import QueuedError
from tests.simulator.harness import Sim

MENU_GET = "/cgi-bin/menu/get"


async def control(sim: Sim, body: object, expect: int = 200) -> dict[str, object]:
    async with sim.client.post("/sim/api/_control", json=body) as resp:
        assert resp.status == expect, await resp.text()
        result: dict[str, object] = await resp.json()
        return result


async def test_queued_errors_answer_the_next_matching_calls(sim: Sim) -> None:
    await sim.token()
    await control(sim, {"errors": [{"errcode": 45009, "path": MENU_GET, "times": 2}]})
    assert (await sim.api("menu/get"))["errcode"] == 45009
    assert (await sim.api("tags/get"))["tags"] == []  # another path is untouched
    assert (await sim.api("menu/get"))["errcode"] == 45009
    assert (await sim.api("menu/get"))["errcode"] == 46003


async def test_python_injection_of_an_error_for_any_path(sim: Sim) -> None:
    await sim.token()
    sim.state.inject(errors=[QueuedError(-1)])
    assert (await sim.api("tags/get"))["errcode"] == -1
    assert (await sim.api("tags/get"))["tags"] == []


async def test_error_rate_applies_to_the_chosen_paths(sim: Sim) -> None:
    await sim.token()
    sim.state.inject(error_rate=1.0, error_code=45011, error_rate_paths=[MENU_GET])
    assert (await sim.api("menu/get"))["errcode"] == 45011
    assert "tags" in await sim.api("tags/get")
    await control(sim, {"reset": True})
    assert (await sim.api("menu/get"))["errcode"] == 46003


async def test_latency_is_added_per_call(sim: Sim) -> None:
    await sim.token()
    await control(sim, {"latency_ms": 150})
    started = time.monotonic()
    await sim.api("tags/get")
    # Asserts the injected delay happened at all, not a timing target.
    assert time.monotonic() - started >= 0.15


async def test_calls_are_counted_per_endpoint(sim: Sim) -> None:
    await sim.token()
    await sim.api("menu/get")
    await sim.api("menu/get")
    snapshot = await sim.get("/sim/api/_control")
    assert snapshot["calls"] == {"/cgi-bin/token": 1, MENU_GET: 2}


async def test_daily_quota_answers_45009_until_beijing_midnight(sim: Sim) -> None:
    await sim.token()
    await control(sim, {"daily_quota": {MENU_GET: 1}})
    assert (await sim.api("menu/get"))["errcode"] == 46003
    assert (await sim.api("menu/get"))["errcode"] == 45009
    await control(sim, {"advance_seconds": 86400})
    assert (await sim.api("menu/get"))["errcode"] == 46003


async def test_bad_control_bodies_get_400_with_a_reason(sim: Sim) -> None:
    assert "error_rate" in str((await control(sim, {"error_rate": 2}, 400))["error"])
    assert "unknown fields" in str((await control(sim, {"latency": 1}, 400))["error"])
    assert "errcode" in str((await control(sim, {"errors": [{"errcode": "x"}]}, 400))["error"])
    assert "not JSON" in str((await control(sim, None, 400))["error"])
    async with sim.client.post("/sim/api/_control", data=b"[") as resp:
        assert resp.status == 400
