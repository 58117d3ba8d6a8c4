"""Open-loop load at a fixed rate against the WeChat callback: latency, not throughput.

    python bench/loadgen.py --url http://127.0.0.1:18081/wechat --scenario help \
        --rate 1000 --duration 20 [--arrivals even|poisson] [--mode bot|echo]

Requests are sent on a schedule fixed in advance (evenly spaced, or Poisson arrivals at the
same mean rate) whether or not earlier ones were answered, and latency is measured from the
*scheduled* send time, so a server that falls behind is charged for the queue it builds
(no coordinated omission). The send-to-reply time is reported too.

Scenarios (same messages as the wrk scripts):
  help   `帮助` from `--users` distinct openids (prefix ohelp), round robin; expects 你可以发送.
  steps  bound users (prefix obench, seeded by seed.py) alternate `解绑` (expects 确定解除)
         and `no` (expects 已保留原绑定。). Each user's messages are strictly sequential: a
         user's next step is not sent before the reply to its previous one has arrived.
Every request carries a unique MsgId. The last line is BENCH_JSON {...} for the runner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

STEPS = (("解绑", "确定解除"), ("no", "已保留原绑定。"))


@dataclass
class Stats:
    latency: list[float] = field(default_factory=list)  # from scheduled time, seconds
    trace: list[tuple[float, float, int]] = field(default_factory=list)  # (at, latency, user)
    service: list[float] = field(default_factory=list)  # from actual send, seconds
    matched: int = 0
    other: int = 0
    non200: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    sample_other: str = ""
    max_lag: float = 0.0  # how late the scheduler launched a request


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def run(args: argparse.Namespace) -> dict[str, object]:
    token = args.token or os.environ.get("HEALTHBOT_WECHAT_TOKEN", "")
    if not token:
        raise SystemExit("--token or HEALTHBOT_WECHAT_TOKEN is required")
    now = int(time.time())
    run_id = args.run_id or (100_000 + now % 900_000)
    q = B.signed_query(token, now, str(3_000_000 + run_id % 1000))
    url = URL(args.url).with_query(q)
    prefix = args.prefix or (B.HELP_PREFIX if args.scenario == "help" else B.BOUND_PREFIX)
    total = int(args.rate * args.duration)
    rng = random.Random(args.seed)
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    stats = Stats()
    user_steps = [0] * args.users
    user_last: list[asyncio.Task[None] | None] = [None] * args.users

    def expectation(content: str, bot_text: str) -> str:
        return f"<Content><![CDATA[{content}]]></Content>" if args.mode == "echo" else bot_text

    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    loop = asyncio.get_running_loop()

    async def one(
        i: int,
        scheduled: float,
        user: int,
        content: str,
        expect: str,
        before: asyncio.Task[None] | None,
    ) -> None:
        if before is not None and not before.done():
            await asyncio.wait({before})  # this user's previous step must be answered first
        body = B.text_body(B.openid(prefix, user), content, run_id * 10**12 + i, now)
        sent = loop.time()
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except Exception as exc:  # timeouts, resets: counted, never fatal
            stats.errors += 1
            kind = type(exc).__name__
            stats.error_kinds[kind] = stats.error_kinds.get(kind, 0) + 1
            return
        end = loop.time()
        stats.latency.append(end - scheduled)
        stats.trace.append((scheduled - start, end - scheduled, user))
        stats.service.append(end - sent)
        if status != 200:
            stats.non200 += 1
            stats.sample_other = stats.sample_other or f"{status} {text[:300]}"
        elif expect in text:
            stats.matched += 1
        else:
            stats.other += 1
            stats.sample_other = stats.sample_other or f"{status} {text[:300]}"

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks: list[asyncio.Task[None]] = []
        start = loop.time() + 0.1
        at = start
        for i in range(total):
            if args.arrivals == "poisson":
                at += rng.expovariate(args.rate)
            else:
                at = start + i / args.rate
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                stats.max_lag = max(stats.max_lag, -delay)
            user = i % args.users
            if args.scenario == "help":
                content, expect = "帮助", expectation("帮助", "你可以发送")
                before = None
            else:
                content, bot_text = STEPS[user_steps[user] % 2]
                user_steps[user] += 1
                expect = expectation(content, bot_text)
                before = user_last[user]
            task = asyncio.create_task(one(i, at, user, content, expect, before))
            if args.scenario != "help":
                user_last[user] = task
            tasks.append(task)
        send_end = loop.time()
        # Bounded drain: whatever has not answered by then counts as an error.
        _, pending = await asyncio.wait(tasks, timeout=args.drain) if tasks else (set(), set())
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
            stats.errors += len(pending)
            stats.error_kinds["not answered by the end"] = len(pending)
    elapsed = send_end - start
    lat = sorted(stats.latency)
    svc = sorted(stats.service)
    answered = len(lat)
    ms = 1000.0
    return {
        "scenario": args.scenario,
        "mode": args.mode,
        "arrivals": args.arrivals,
        "target_rps": args.rate,
        "sent": total,
        "offered_rps": round(total / elapsed, 1) if elapsed > 0 else None,
        "answered": answered,
        "p50_ms": round(percentile(lat, 50) * ms, 3),
        "p90_ms": round(percentile(lat, 90) * ms, 3),
        "p99_ms": round(percentile(lat, 99) * ms, 3),
        "max_ms": round(lat[-1] * ms, 3) if lat else None,
        "service_p50_ms": round(percentile(svc, 50) * ms, 3),
        "service_p99_ms": round(percentile(svc, 99) * ms, 3),
        "matched": stats.matched,
        "matched_pct": round(100 * stats.matched / total, 2) if total else None,
        "other": stats.other,
        "non200": stats.non200,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "max_scheduler_lag_ms": round(stats.max_lag * ms, 3),
        "sample_other": stats.sample_other,
        "trace": sorted(stats.trace),
    }


def main() -> None:
    p = argparse.ArgumentParser(description="Open-loop fixed-rate load for the WeChat callback.")
    p.add_argument("--url", required=True)
    p.add_argument("--scenario", choices=["help", "steps"], required=True)
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--arrivals", choices=["even", "poisson"], default="poisson")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--prefix", default=None, help="openid prefix (default per scenario)")
    p.add_argument("--mode", choices=["bot", "echo"], default="bot")
    p.add_argument("--token", default=None)
    p.add_argument("--run-id", type=int, default=None, help="6 digits; MsgId high digits")
    p.add_argument("--connections", type=int, default=256, help="client connection pool size")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds")
    p.add_argument("--drain", type=float, default=15.0, help="wait for stragglers, seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dump", default=None, help="write every request's latency to this CSV")
    args = p.parse_args()
    result = asyncio.run(run(args))
    trace = result.pop("trace")
    if args.dump:
        Path(args.dump).write_text(
            "scheduled_s,latency_ms,user\n"
            + "".join(f"{a:.4f},{lat * 1000:.3f},{u}\n" for a, lat, u in trace),  # type: ignore[attr-defined]
            encoding="utf-8",
        )
    print(
        f"{result['scenario']} ({result['mode']}) at {result['target_rps']:.0f}/s "
        f"{result['arrivals']}: offered {result['offered_rps']}/s, answered {result['answered']}"
        f"/{result['sent']}, p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms, expected replies {result['matched_pct']}%, "
        f"errors {result['errors']} {result['error_kinds'] or ''}"
    )
    if result["sample_other"]:
        print("  first unexpected reply:", str(result["sample_other"]).replace("\n", " "))
    print("BENCH_JSON " + json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
