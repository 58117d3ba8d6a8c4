"""An emulated WeChat: the API the bot calls and a web chat page that plays its users."""

from __future__ import annotations

from simulator.app import create_simulator_app
from simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "create_simulator_app"]
