"""The demo served on a real port, and headless Chromium (Debian's) driven by Playwright."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.demo import create_demo_app, demo_settings, prepare_data_dir
from tests.support import port_of, reserved_socket

CHROMIUM = os.environ.get("HEALTHBOT_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Demo:
    url: str
    app: web.Application


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Demo]:
    sock = reserved_socket()
    port = port_of(sock)
    data = tmp_path / "demo-data"
    prepare_data_dir(data, fresh=True)
    app = create_demo_app(demo_settings(port, data, safe_mode=False), port)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield Demo(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


@pytest.fixture
def chromium() -> str:
    if not shutil.which(CHROMIUM) and not os.path.exists(CHROMIUM):
        message = f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()
