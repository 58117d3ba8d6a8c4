"""Open-loop guard scans at a fixed rate: latency from the *scheduled* send time.

    python bench/verify_load.py --url http://127.0.0.1:18281/wechat \
        --tokens /tmp/verify/tokens.txt --rate 200 --duration 20 [--mode bot|echo]

The same requests as bench/wrk/verify.lua (a guard of prefix obguard, scancode_waitmsg
VERIFY, the next pass code), sent on a Poisson schedule fixed in advance whether or not
earlier ones were answered, so a server that falls behind is charged for its queue (no
coordinated omission). The last line is BENCH_JSON {...} for bench/run_verify.py.

`send lag` is how late the generator itself started each request (its own event loop, on a
shared core): a tail the server did not cause. `--latencies FILE` writes one line per answered
request, `offset_s latency_ms send_lag_ms stolen_ms` (offset from the first scheduled send), to
see when slow answers came and whether they came together.

`stolen_ms` is what the host took while the request was on its way (see HostWatch): the cores'
stolen time from /proc/stat, and the time this generator's core did not run at all, which
steal does not always show (under nested virtualisation the outer host's pauses are nobody's
steal here). It is approximate: read it as touched or not more than as a length. A request
the host stalled is slow whatever the server does.
`p99_host_quiet_ms` is the p99 of the requests the host took nothing from, beside the p99 of
them all.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import sys
import threading
import time
from pathlib import Path

import aiohttp
from yarl import URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

PASS = "✅"


def scan_body(openid: str, token: str, create_time: int) -> bytes:
    return (
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime>"
        "<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_waitmsg]]></Event>"
        "<EventKey><![CDATA[VERIFY]]></EventKey>"
        "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>"
        f"<ScanResult><![CDATA[{token}]]></ScanResult></ScanCodeInfo></xml>"
    ).encode()


def bursts(timeline: list[tuple[float, float, float]], slow: float, gap: float) -> list[int]:
    """Answers slower than `slow` seconds, grouped when scheduled within `gap` of the last
    one: the size of each group. A few large groups mean the server stalled now and then."""
    sizes: list[int] = []
    last = None
    for at, took, _ in sorted(timeline):
        if took <= slow:
            continue
        if last is None or at - last > gap:
            sizes.append(0)
        sizes[-1] += 1
        last = at
    return sizes


class HostWatch(threading.Thread):
    """What the host took from this machine, seen from a thread that wakes every `every`
    seconds on the generator's core:

    - steal: each core's stolen time in /proc/stat (the time the hypervisor gave the core
      to another guest while this machine had work for it), kept where it changed. The
      file shows it in whole clock ticks (10 ms), rounded down, so a short steal shows only
      once the total crosses the next tick, perhaps during a later request; hence the
      margin in `taken`, and "touched" is approximate;
    - pauses: a wake more than `late` seconds late. On this core the generator at a few
      hundred requests a second holds the GIL for at most a few milliseconds at a time
      (its longest garbage collection at 200/s: 1.75 ms), and Redis shares the core at the
      same niceness; a wake that late most likely means the core did not run at all: a
      pause of the whole machine by a host above the one that counts steal.
    """

    def __init__(self, every: float = 0.005, late: float = 0.010) -> None:
        super().__init__(daemon=True)
        self.every, self.late = every, late
        self.tick = 1 / os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, int]] = []  # (monotonic time, ticks stolen on all cores)
        self.pauses: list[tuple[float, float]] = []  # (when the wake was due, when it came)
        self.times: list[float] = []  # of the samples, once stopped
        self.done = threading.Event()
        self.fd = os.open("/proc/stat", os.O_RDONLY)

    def read(self) -> int:
        # "cpu  …" (all cores), then "cpu0 …", "cpu1 …": field 8 is steal, after user,
        # nice, system, idle, iowait, irq and softirq.
        lines = os.pread(self.fd, 65536, 0).split(b"\n")
        return sum(
            int(line.split()[8]) for line in lines if line[:3] == b"cpu" and line[3:4] != b" "
        )

    def run(self) -> None:
        last = self.read()
        woke = time.monotonic()
        self.samples.append((woke, last))
        stopping = False
        while not stopping:
            stopping = self.done.wait(self.every)
            now, ticks = time.monotonic(), self.read()
            if not stopping and now - woke > self.every + self.late:
                self.pauses.append((woke + self.every, now))
            woke = now
            if ticks != last:
                self.samples.append((now, ticks))
                last = ticks

    def stop(self) -> None:
        self.done.set()
        self.join()
        os.close(self.fd)
        self.times = [at for at, _ in self.samples]

    def taken(self, start: float, end: float, margin: float = 0.025) -> float:
        """Seconds the host took between `start` and `end`: the cores' steal counted up to
        `margin` after it, and the pauses of this core that overlap it."""
        first = max(0, bisect.bisect_right(self.times, start) - 1)
        last = max(0, bisect.bisect_right(self.times, end + margin) - 1)
        stolen = (self.samples[last][1] - self.samples[first][1]) * self.tick
        paused = sum(
            min(end, after) - max(start, before)
            for before, after in self.pauses
            if before < end and after > start
        )
        return stolen + paused


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, round(p / 100 * len(values) + 0.5) - 1))]


async def run(args: argparse.Namespace, codes: list[str]) -> dict[str, object]:
    token = args.token or os.environ.get("HEALTHBOT_WECHAT_TOKEN", "")
    now = int(time.time())
    url = URL(args.url).with_query(B.signed_query(token, now, "515151"))
    expect = "<Content><![CDATA[success]]></Content>" if args.mode == "echo" else PASS
    total = int(args.rate * args.duration)
    rng = random.Random(args.seed)
    base_time = 1_500_000_000 + (now % 1000) * 1_000_000
    latency: list[float] = []
    timeline: list[tuple[float, float, float]] = []  # (scheduled, latency, send lag)
    # asyncio's loop.time() is time.monotonic(): the watch's samples and the requests share
    # a clock.
    watch = HostWatch()
    watch.start()
    start = 0.0
    counts = {"matched": 0, "other": 0, "non200": 0, "errors": 0}
    loop = asyncio.get_running_loop()
    headers = {"Content-Type": "text/xml; charset=utf-8"}

    async def one(i: int, scheduled: float) -> None:
        lag = loop.time() - scheduled
        openid = B.openid("obguard", i % args.guards)
        body = scan_body(openid, codes[(i * 7919) % len(codes)], base_time + i)
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                text, status = await resp.text(), resp.status
        except Exception:
            counts["errors"] += 1
            return
        latency.append(loop.time() - scheduled)
        timeline.append((scheduled - start, latency[-1], lag))
        if status != 200:
            counts["non200"] += 1
        elif expect in text:
            counts["matched"] += 1
        else:
            counts["other"] += 1

    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tasks = []
        start = at = loop.time() + 0.1
        for i in range(total):
            at += rng.expovariate(args.rate)
            delay = at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, at)))
        elapsed = loop.time() - start
        await asyncio.wait(tasks, timeout=15)
    await asyncio.sleep(0.03)  # for steal counted just after the last answers (`taken`)
    watch.stop()
    lat = sorted(latency)
    send_lag = sorted(lag for _, _, lag in timeline)
    stolen = [watch.taken(start + at, start + at + took) for at, took, _ in timeline]
    clean = sorted(took for (_, took, _), s in zip(timeline, stolen, strict=True) if not s)
    if args.latencies is not None:
        args.latencies.write_text(
            "".join(
                f"{at:.4f} {1e3 * took:.3f} {1e3 * lag:.3f} {1e3 * s:.0f}\n"
                for (at, took, lag), s in zip(timeline, stolen, strict=True)
            )
        )
    return {
        "scenario": "verify_open_loop",
        "mode": args.mode,
        "target_rps": args.rate,
        "offered_rps": round(total / elapsed, 1),
        "sent": total,
        "answered": len(lat),
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p90_ms": round(percentile(lat, 90) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3) if lat else None,
        "send_lag_p99_ms": round(percentile(send_lag, 99) * 1000, 3),
        # The same p99 over the answers the host took nothing from, and how many that left out.
        "p99_host_quiet_ms": round(percentile(clean, 99) * 1000, 3) if clean else None,
        "host_touched": len(lat) - len(clean),
        "host_pauses_ms": [round(1e3 * (came - due)) for due, came in watch.pauses],
        "slow_host_touched": sum(
            1 for (_, took, _), s in zip(timeline, stolen, strict=True) if took > 0.010 and s
        ),
        "over_10ms_bursts": bursts(timeline, 0.010, 0.1),
        **counts,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--tokens", required=True, help="tokens.txt from bench/access_seed.py")
    p.add_argument("--rate", type=float, default=200.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--guards", type=int, default=200)
    p.add_argument("--mode", choices=["bot", "echo"], default="bot")
    p.add_argument("--token", default=None)
    p.add_argument("--connections", type=int, default=256)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latencies", type=Path, default=None, help="per-request timeline to FILE")
    args = p.parse_args()
    codes = [t for t in Path(args.tokens).read_text().split() if t]
    result = asyncio.run(run(args, codes))
    print(
        f"verify ({result['mode']}) at {result['target_rps']}/s: p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, matched {result['matched']}/{result['sent']}"
    )
    print("BENCH_JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
