"""Typed keys for what the simulator keeps on its aiohttp application."""

from __future__ import annotations

from aiohttp import web

from simulator.state import SimulatorState

STATE = web.AppKey("simulator_state", SimulatorState)
