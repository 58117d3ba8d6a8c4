"""Access tokens: /cgi-bin/token, /cgi-bin/stable_token and the checks every endpoint makes."""

from __future__ import annotations

from simulator.tokens import LIFETIME, OVERLAP
from tests.simulator.harness import APPID, SECRET, Sim


async def stable(sim: Sim, **overrides: object) -> dict[str, object]:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, **overrides}
    async with sim.client.post("/sim/api/cgi-bin/stable_token", json=body) as resp:
        assert resp.status == 200
        result: dict[str, object] = await resp.json()
        return result


async def menu_get(sim: Sim, token: str | None) -> int:
    params = {} if token is None else {"access_token": token}
    async with sim.client.get("/sim/api/cgi-bin/menu/get", params=params) as resp:
        body = await resp.json()
        return int(body["errcode"])


async def test_stable_token_returns_the_same_token_until_near_expiry(sim: Sim) -> None:
    first = await stable(sim)
    assert first["expires_in"] == LIFETIME
    sim.clock.advance(3600)
    second = await stable(sim)
    assert second["access_token"] == first["access_token"]
    assert second["expires_in"] == LIFETIME - 3600
    sim.clock.advance(LIFETIME - 3600 - 60)  # one minute left: time for a new one
    third = await stable(sim)
    assert third["access_token"] != first["access_token"]


async def test_force_refresh_revokes_the_old_stable_token(sim: Sim) -> None:
    old = str((await stable(sim))["access_token"])
    new = str((await stable(sim, force_refresh=True))["access_token"])
    assert new != old
    assert await menu_get(sim, old) == 40001
    assert await menu_get(sim, new) == 46003  # valid token, no menu yet
    again = await stable(sim, force_refresh=True)
    assert again["errcode"] == 45011  # 30 s apart at least


async def test_wrong_credentials_get_wechat_codes(sim: Sim) -> None:
    assert (await stable(sim, secret="nope"))["errcode"] == 40125
    assert (await stable(sim, appid="wx0000"))["errcode"] == 40013
    assert (await stable(sim, grant_type="password"))["errcode"] == 40002
    assert (await stable(sim, force_refresh="yes"))["errcode"] == 47001
    body = await sim.get(
        "/sim/api/cgi-bin/token", grant_type="client_credential", appid=APPID, secret="x"
    )
    assert body["errcode"] == 40125


async def test_stable_token_rejects_a_body_that_is_not_json(sim: Sim) -> None:
    async with sim.client.post("/sim/api/cgi-bin/stable_token", data=b"{oops") as resp:
        assert (await resp.json())["errcode"] == 47001
    async with sim.client.post("/sim/api/cgi-bin/stable_token", data=b"") as resp:
        assert (await resp.json())["errcode"] == 44002


async def test_missing_invalid_and_expired_tokens(sim: Sim) -> None:
    assert await menu_get(sim, None) == 41001
    assert await menu_get(sim, "not a token") == 40014
    assert await menu_get(sim, "81_" + "A" * 100) == 40001
    token = await sim.token()
    sim.clock.advance(LIFETIME)
    assert await menu_get(sim, token) == 42001


async def test_a_new_token_leaves_the_old_one_working_for_five_minutes(sim: Sim) -> None:
    old = await sim.token()
    params = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    new = (await sim.get("/sim/api/cgi-bin/token", **params))["access_token"]
    assert new != old
    assert await menu_get(sim, old) == 46003
    sim.clock.advance(OVERLAP)
    assert await menu_get(sim, old) == 42001
    assert await menu_get(sim, new) == 46003
