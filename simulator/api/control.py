"""`api/_control`: fault injection and call counts for tests and benchmarks (not WeChat's)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.faults import QueuedError
from simulator.httperrors import bad_request, json_object
from simulator.keys import STATE
from simulator.state import SimulatorState

routes = web.RouteTableDef()


@routes.get("/_control")
async def show(request: web.Request) -> web.Response:
    return web.json_response(_snapshot(request.config_dict[STATE]))


@routes.post("/_control")
async def change(request: web.Request) -> web.Response:
    """Apply a JSON body such as {"latency_ms": 200, "errors": [{"errcode": 45015}]}."""
    state = request.config_dict[STATE]
    body = await json_object(request)
    unknown = set(body) - {
        "reset",
        "latency_ms",
        "path_latency_ms",
        "errors",
        "error_rate",
        "error_code",
        "error_rate_paths",
        "daily_quota",
        "advance_seconds",
        "callback_timeout",
        "reset_calls",
    }
    if unknown:
        raise bad_request(f"unknown fields {sorted(unknown)}")
    if body.get("reset"):
        state.faults.reset()
    if body.get("reset_calls"):
        state.calls.clear()
    try:
        state.inject(
            latency_ms=_optional(body, "latency_ms", int),
            path_latency_ms=_path_numbers(body, "path_latency_ms"),
            error_rate=_optional_number(body, "error_rate"),
            error_code=_optional(body, "error_code", int),
            error_rate_paths=_paths(body.get("error_rate_paths")),
            errors=_errors(body.get("errors", [])),
        )
        for path, limit in (_path_numbers(body, "daily_quota", allow_null=True) or {}).items():
            state.quotas.set_limit(path, limit)
    except ValueError as exc:
        raise bad_request(str(exc)) from exc
    advance = _optional_number(body, "advance_seconds")
    if advance is not None:
        if advance < 0:
            raise bad_request("advance_seconds cannot move time back")
        state.clock.advance(advance)
    timeout = _optional_number(body, "callback_timeout")
    if timeout is not None:
        if not 0 < timeout <= 60:
            raise bad_request(f"callback_timeout {timeout} is outside (0, 60]")
        state.callback.timeout = timeout
    return web.json_response(_snapshot(state))


def _snapshot(state: SimulatorState) -> dict[str, Any]:
    return {
        "calls": dict(state.calls),
        "faults": state.faults.snapshot(),
        "daily_quota": state.quotas.snapshot(),
        "callback_timeout": state.callback.timeout,
        "clock_offset": state.clock.offset,
    }


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise bad_request(f"{name} must be {kind.__name__}, got {value!r}")
    return value


def _optional_number(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(f"{name} must be a number, got {value!r}")
    return float(value)


def _path_numbers(
    body: dict[str, Any], name: str, *, allow_null: bool = False
) -> dict[str, Any] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        (isinstance(v, int) and not isinstance(v, bool)) or (allow_null and v is None)
        for v in value.values()
    ):
        raise bad_request(f"{name} must map API paths to integers")
    return value


def _paths(raw: object) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise bad_request("error_rate_paths must be a list of API paths")
    return raw


def _errors(raw: object) -> list[QueuedError]:
    if not isinstance(raw, list):
        raise bad_request("errors must be a list")
    queued: list[QueuedError] = []
    for item in raw:
        if not isinstance(item, dict):
            raise bad_request(f"errors item {item!r} is not an object")
        code, path, times = item.get("errcode"), item.get("path"), item.get("times", 1)
        if isinstance(code, bool) or not isinstance(code, int):
            raise bad_request(f"errcode {code!r} is not an integer")
        if path is not None and not isinstance(path, str):
            raise bad_request(f"path {path!r} is not a string")
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= 10_000:
            raise bad_request(f"times {times!r} is not an integer 1–10000")
        queued.extend(QueuedError(code, path) for _ in range(times))
    return queued
