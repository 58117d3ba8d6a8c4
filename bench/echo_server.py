"""The reference: a minimal aiohttp + wechatpy WeChat callback with no state.

It checks the plain-mode signature (constant time), parses the message with wechatpy and
echoes a text message's content back in a wechatpy TextReply. No dedup, no Redis, no database:
the ceiling the bot is measured against. It runs on the event loop `healthbot serve` would
(uvloop when installed; HEALTHBOT_EVENT_LOOP or --loop), so both are measured alike.

    python bench/echo_server.py --port 18082 --token T
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os

from aiohttp import web
from wechatpy import parse_message
from wechatpy.replies import TextReply

from bot.loop import CHOICES, new_loop


def make_app(token: str) -> web.Application:
    async def callback(request: web.Request) -> web.Response:
        q = request.query
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        expected = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
        if not hmac.compare_digest(expected, q.get("signature", "")):
            return web.Response(status=403, text="bad signature")
        body = await request.read()
        try:
            msg = parse_message(body)
        except Exception:
            return web.Response(status=400, text="bad message")
        content = getattr(msg, "content", "") or "success"
        xml = TextReply(content=content, message=msg).render()
        return web.Response(text=xml, content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", callback)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18082)
    parser.add_argument("--token", default=os.environ.get("HEALTHBOT_WECHAT_TOKEN", ""))
    parser.add_argument(
        "--loop",
        choices=CHOICES,
        default=os.environ.get("HEALTHBOT_EVENT_LOOP", "auto"),
        help="the event loop, chosen as `healthbot serve` chooses its own (bot/loop.py)",
    )
    args = parser.parse_args()
    if args.loop not in CHOICES:  # a default from the environment is not checked by argparse
        parser.error(f"--loop (or HEALTHBOT_EVENT_LOOP) must be one of {', '.join(CHOICES)}")
    if not args.token:
        parser.error("--token (or HEALTHBOT_WECHAT_TOKEN) is required")
    web.run_app(
        make_app(args.token),
        host=args.host,
        port=args.port,
        access_log=None,
        print=lambda _: print(f"echo server on http://{args.host}:{args.port}/wechat", flush=True),
        loop=new_loop(args.loop),
    )


if __name__ == "__main__":
    main()
