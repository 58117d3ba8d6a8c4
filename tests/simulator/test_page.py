"""The chat page is served under the mount point, with relative URLs only."""

from __future__ import annotations

import re

from simulator.page import STATIC
from tests.simulator.harness import Sim


async def test_page_and_assets_are_served(sim: Sim) -> None:
    async with sim.client.get("/sim/") as resp:
        assert resp.status == 200
        html = await resp.text()
    assert 'src="static/app.js"' in html
    for asset in ("static/app.js", "static/style.css"):
        async with sim.client.get("/sim/" + asset) as resp:
            assert resp.status == 200
    config = await sim.get("/sim/chat/config")
    assert config == {
        "account_name": "Healthy Campus",
        "gh_id": config["gh_id"],
        "safe_mode": False,
    }
    assert re.fullmatch(r"gh_[0-9a-f]{12}", config["gh_id"])


def test_page_uses_no_absolute_or_external_urls() -> None:
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC / name).read_text(encoding="utf-8")
        # Absolute paths would break another mount point; the demo machine has no internet.
        assert not re.search(r"""(src|href)=["']/""", text), name
        assert not re.search(r"""fetch\(["'`]/|EventSource\(["'`]/""", text), name
        assert "cdn" not in text.lower(), name
