"""The emulated WeChat for the outbox benchmark: N followers, added latency, delivery counts.

    python bench/outbox_sim.py --port 18400 --users 100000 --latency-ms 20 [--window]

Serves the simulator at /sim/ (the bot's HEALTHBOT_WECHAT_API_BASE is .../sim/api) with the
followers `ob000000`… already following (and, with --window, inside the 48-hour window), and
`GET /bench/deliveries`: what the emulated WeChat delivered, counted from its own chat log,
per user. TEMPLATESENDJOBFINISH reports are not sent (there is no callback server in the
benchmark; the tests cover them).
"""

from __future__ import annotations

import argparse
import gc
from collections import Counter
from typing import Any

from aiohttp import web
from outbox_common import APPID, SECRET, TOKEN, openid

from simulator import SimulatorConfig, create_simulator_app
from simulator.api import messages
from simulator.keys import STATE
from simulator.state import SimulatorState
from simulator.users import KfLimits


def _forget_old_sends(state: SimulatorState, now: float) -> None:
    """The simulator's own version rebuilds the whole client_msg_id table on every template
    send once it holds 10,000 (quadratic: a 100,000-push broadcast slowed the emulated API to
    ~50 calls/s). Same rule, oldest first: entries are inserted in time order."""
    sends = state.template_sends
    while sends:
        oldest = next(iter(sends))
        if now - sends[oldest][1] < messages.CLIENT_MSG_TTL:
            return
        del sends[oldest]


def build(users: int, latency_ms: int, window: bool) -> web.Application:
    sim = create_simulator_app(
        SimulatorConfig(
            token=TOKEN,
            appid=APPID,
            secret=SECRET,
            aes_key=None,
            callback_url="http://127.0.0.1:9/wechat",
            personas_url=None,
        )
    )
    state = sim[STATE]
    messages._forget_old_sends = _forget_old_sends  # see above; reported to the simulator

    def drop(work: Any) -> None:
        work.close()  # the TEMPLATESENDJOBFINISH report: nobody to receive it here

    state.spawn = drop  # type: ignore[method-assign]
    state.users.kf_limits = KfLimits(message_quota=None, event_quota=None)
    now = state.clock.time()
    for i in range(users):
        user = state.users.add(openid(i), following=True)
        if window:
            user.window.on_message(now - 3600)
    state.inject(latency_ms=latency_ms)
    # 100,000 users are millions of long-lived objects: keep the cyclic GC from walking them
    # again and again (it made the emulated API, not the dispatcher, the slow side).
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)

    async def deliveries(request: web.Request) -> web.Response:
        per_user: Counter[str] = Counter()
        by_channel: Counter[str] = Counter()
        for entry in state.log.all_entries():
            if entry.message.via in ("custom", "template"):
                per_user[entry.openid] += 1
                by_channel[entry.message.via] += 1
        return web.json_response(
            {
                "messages": sum(per_user.values()),
                "users": len(per_user),
                "users_twice_or_more": sum(1 for n in per_user.values() if n > 1),
                "by_channel": dict(by_channel),
                "api_calls": dict(state.calls),
            }
        )

    app = web.Application()
    app.add_subapp("/sim/", sim)
    app.router.add_get("/bench/deliveries", deliveries)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18400)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--window", action="store_true", help="users inside the 48-hour window")
    args = parser.parse_args()
    app = build(args.users, args.latency_ms, args.window)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
