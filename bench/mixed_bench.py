"""Two `serve` workers and a `scheduler` under mixed load, against one worker, in one command.

    .venv/bin/python bench/mixed_bench.py [--duration 20] [--connections 32] [--json-out FILE]

Redis + PostgreSQL, as in production (see bench/README.md, "Many workers"):
1. Creates a fresh PostgreSQL database (dropped at the end) and seeds it with
   bench/access_seed.py (a campus, the gate BGATE, `--students` students with pass codes valid
   for the run, `--guards` guards), plus a library BLIB (policy open) and an openid bound to
   every student (prefix obstu). Redis keys live under a fresh AppId and are deleted at the
   end (the Redis database is never flushed).
2. Starts an emulated WeChat API (the simulator) for the pass-code image uploads and the
   scheduler's pushes, two `healthbot serve --no-scheduler` workers and one
   `healthbot scheduler`, and puts every guard on duty at BGATE.
3. Mixed load with wrk (bench/wrk/mixed.lua: per 10 requests 3 check-ins `打卡 36.5`,
   2 pass codes `健康码`, 3 guard scans, 2 place check-ins), closed loop, `--connections` in
   all: first against both workers at once (one wrk per worker, half the connections each),
   then against one worker alone (the other stopped), with the same total connections.
   Before that every student fetches a pass code and checks in once (priming), so both
   setups see the same steady state: codes cached, today's report replaced.
4. Prints, for every round of both setups, throughput, latency (p50/p90/p99, merged over the
   wrk processes), the share of expected replies, how busy the whole machine was (all its
   CPUs, whoever used them) and the CPU each of our processes used (100 % = one core); and
   writes it all as JSON with --json-out.

The per-user rate limit is lifted for the run (each user sends several messages a second).
Everything started here is stopped at the end, even on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import access_seed  # noqa: E402
import benchlib as B  # noqa: E402

PY = Path(sys.executable)
TOKEN = "mixed-bench-token"
SECRET = "mixed-bench-secret"
STUDENT_PREFIX = "obstu"
PLACE = "BLIB"

SIMULATOR = """
import sys
from aiohttp import web
from simulator import SimulatorConfig, create_simulator_app
from simulator.keys import STATE
from simulator.users import KfLimits
sim = create_simulator_app(SimulatorConfig(token=sys.argv[2], appid=sys.argv[3],
    secret=sys.argv[4], aes_key=None, callback_url="http://127.0.0.1:9/wechat",
    personas_url=None))
state = sim[STATE]
state.users.kf_limits = KfLimits(message_quota=None, event_quota=None)
for prefix, count in (("obstu", int(sys.argv[5])), ("obguard", int(sys.argv[6]))):
    for i in range(count):
        state.users.add(f"{prefix}{i:06d}", following=True).window.on_message(state.clock.time())
root = web.Application()
root.add_subapp("/sim/", sim)
web.run_app(root, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def admin(server_url: str, sql: str) -> None:
    import asyncpg

    parts = urlsplit(server_url.replace("+asyncpg", ""))
    url = urlunsplit(parts._replace(path="/postgres"))

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(go())


async def add_students_and_library(students: int) -> None:
    """An openid bound to every seeded student, and the library for place check-ins."""
    from sqlalchemy import insert, select

    from bot.settings import Settings
    from storage.engine import create_engine, session_factory
    from storage.models import Person, Place, WeChatAccount

    engine = create_engine(Settings().database_url)
    try:
        async with session_factory(engine).begin() as s:
            campus = await s.scalar(select(Place.id).where(Place.code == "BCAMPUS"))
            s.add(
                Place(
                    code=PLACE,
                    name=f"压测图书馆 {PLACE}",
                    kind="library",
                    policy="open",
                    parent_id=campus,
                )
            )
            rows = await s.execute(
                select(Person.id, Person.person_no).where(Person.person_no.like("BS%"))
            )
            ids = {no: pid for pid, no in rows}
            await s.execute(
                insert(WeChatAccount),
                [
                    {
                        "openid": B.openid(STUDENT_PREFIX, i),
                        "person_id": ids[access_seed.student_no(i)],
                    }
                    for i in range(students)
                ],
            )
    finally:
        await engine.dispose()


async def prime(urls: list[str], students: int, concurrency: int = 8) -> int:
    """Each student's pass-code image made and uploaded once, and a first check-in stored,
    so the measured runs all see the steady state (a cached code, a report to replace)."""
    import aiohttp

    now = int(time.time())
    params = B.signed_query(TOKEN, now, "777001")
    base = 7_000_000_000_000_000 + (now % 100_000) * 100_000
    failures = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(students):
        queue.put_nowait(i)

    async def one(http: aiohttp.ClientSession) -> None:
        nonlocal failures
        while not queue.empty():
            i = queue.get_nowait()
            openid = B.openid(STUDENT_PREFIX, i)
            for k, (text, expect) in enumerate((("健康码", "image"), ("打卡 36.5", "36.5"))):
                body = B.text_body(openid, text, base + 2 * i + k, now)
                async with http.post(f"{urls[i % len(urls)]}/wechat", params=params,
                                     data=body) as resp:  # fmt: skip
                    reply = await resp.text()
                if reply == "success":
                    continue  # answered late (pushed instead); the code is made all the same
                if resp.status != 200 or expect not in reply:
                    failures += 1
                    if failures <= 3:
                        log(f"priming {openid} {text}: HTTP {resp.status} {reply[:300]}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        await asyncio.gather(*(one(http) for _ in range(concurrency)))
    return failures


class Processes:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        out = (self.tmp / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


def wrk(
    url: str, connections: int, duration: int, part: int, args: argparse.Namespace, tokens: Path
) -> subprocess.Popen[str]:
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
        "-s", str(BENCH / "wrk" / "mixed.lua"), f"{url}/wechat", "--",
        f"token={TOKEN}", f"users={args.students}", f"prefix={STUDENT_PREFIX}", "threads=1",
        f"guards={args.guards}", f"tokens={tokens}", f"part={part}",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse(output: str) -> tuple[dict[str, Any], list[float]]:
    result: dict[str, Any] = {}
    quantiles: list[float] = []
    for line in output.splitlines():
        if line.startswith("BENCH_JSON "):
            result = json.loads(line[len("BENCH_JSON ") :])
        elif line.startswith("BENCH_QUANTILES "):
            quantiles = [float(v) for v in line[len("BENCH_QUANTILES ") :].split(",")]
    if not result or not quantiles:
        raise SystemExit(f"wrk gave no result:\n{output[-3000:]}")
    return result, quantiles


def merged(parts: list[tuple[dict[str, Any], list[float]]]) -> dict[str, Any]:
    """Sum the counts; merge the latency quantiles, each weighted by its wrk's requests."""
    weighted = sorted((q, r["requests"] / len(qs)) for r, qs in parts for q in qs)
    total = sum(w for _, w in weighted)

    def pct(p: float) -> float:
        acc = 0.0
        for q, w in weighted:
            acc += w
            if acc >= total * p / 100:
                return q
        return weighted[-1][0]

    duration = max(r["duration_s"] for r, _ in parts)
    keys = ["requests", "responses", "matched", "other", "non200", "socket_errors", "timeouts",
            "n_checkin", "n_code", "n_place", "n_scan"]  # fmt: skip
    out: dict[str, Any] = {k: sum(int(r.get(k, 0)) for r, _ in parts) for k in keys}
    out.update(
        duration_s=duration,
        rps=round(out["requests"] / duration, 1),
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=max(r["max_ms"] for r, _ in parts),
    )
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def load(
    urls: list[str],
    args: argparse.Namespace,
    tokens: Path,
    duration: int,
    label: str,
    procs: Processes | None = None,
) -> dict[str, Any]:
    per = max(1, args.connections // len(urls))
    log(f"{label}: {len(urls)} worker(s), {per * len(urls)} connections, {duration} s "
        f"(load average {loadavg()})")  # fmt: skip
    watched = dict(procs.procs) if procs is not None else {}
    cpu_before = {name: cpu_seconds(p.pid) for name, p in watched.items()}
    busy_before, total_before = machine_busy()
    started = time.monotonic()
    runs = [wrk(url, per, duration, part, args, tokens) for part, url in enumerate(urls)]
    outputs = [proc.communicate(timeout=duration + 60)[0] for proc in runs]
    elapsed = time.monotonic() - started
    busy_after, total_after = machine_busy()
    for output in outputs:
        for line in output.splitlines():
            if "first unexpected reply" in line:
                log("  " + line.strip()[:300])
    result = merged([parse(o) for o in outputs])
    result["loadavg_after"] = loadavg()
    # How much of the machine was busy (all processes, ours or not), and each of ours.
    result["machine_busy_pct"] = round(
        100 * (busy_after - busy_before) / max(1, total_after - total_before), 1
    )
    result["cpu_pct"] = {
        name: round(100 * (cpu_seconds(p.pid) - cpu_before[name]) / elapsed, 1)
        for name, p in watched.items()
    }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--pg",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server; a fresh database is created on it and dropped",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    p.add_argument("--students", type=int, default=1000)
    p.add_argument("--guards", type=int, default=100)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rounds", type=int, default=1, help="measure both setups this many times")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = p.parse_args()  # fmt: skip

    tmp = Path(tempfile.mkdtemp(prefix="healthbot-mixed-"))
    name = f"hb_bench_mixed_{secrets.token_hex(4)}"
    appid = "wx" + secrets.token_hex(8)
    database_url = urlunsplit(urlsplit(args.pg)._replace(path=f"/{name}"))
    sim_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEALTHBOT_")},
        "PYTHONPATH": str(ROOT),
        "HEALTHBOT_DATABASE_URL": database_url,
        "HEALTHBOT_REDIS_URL": args.redis_url,
        "HEALTHBOT_WECHAT_TOKEN": TOKEN,
        "HEALTHBOT_WECHAT_APPID": appid,
        "HEALTHBOT_WECHAT_SECRET": SECRET,
        "HEALTHBOT_DATA_KEY": "mixed-bench-data-key",
        "HEALTHBOT_WECHAT_API_BASE": f"http://127.0.0.1:{sim_port}/sim/api",
        "HEALTHBOT_RATE_LIMIT_PER_MINUTE": "100000000",
        "HEALTHBOT_GUARD_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_at_start": loadavg(),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    procs = Processes(tmp, env)
    log(f"database {name}, logs in {tmp}")
    admin(args.pg, f'CREATE DATABASE "{name}"')
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("HEALTHBOT_")})
        validity = 3 * (args.duration + args.warmup) + 600
        codes = asyncio.run(access_seed.seed(args.students, args.guards, validity))
        tokens = tmp / "tokens.txt"
        tokens.write_text("\n".join(codes) + "\n")
        asyncio.run(add_students_and_library(args.students))
        log(f"seeded {args.students} students, {args.guards} guards, {len(codes)} pass codes")

        procs.start(
            "simulator",
            [str(PY), "-c", SIMULATOR, str(sim_port), TOKEN, appid, SECRET,
             str(args.students), str(args.guards)],
        )  # fmt: skip
        healthbot = [str(PY), "-c", "from bot.cli import main; main()"]
        ports = [free_port(), free_port()]
        serves = [[*healthbot, "serve", "--port", str(port), "--no-scheduler"] for port in ports]
        serve2 = serves[1]
        for i, cmd in enumerate(serves):
            procs.start(f"serve{i + 1}", cmd)
        procs.start("scheduler", [*healthbot, "scheduler"])
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            wait_http(f"{url}/healthz")
        failed = asyncio.run(access_seed.on_duty(f"{urls[0]}/wechat", TOKEN, args.guards))
        if failed:
            raise SystemExit(f"{failed} guards could not go on duty; see {tmp}/serve1.log")
        log(f"{args.guards} guards on duty at {access_seed.GATE}")

        started = time.monotonic()
        failed = asyncio.run(prime(urls, args.students))
        if failed:
            raise SystemExit(f"priming: {failed} unexpected replies; see {tmp}/serve*.log")
        log(f"primed every student's pass code and check-in in {time.monotonic() - started:.0f} s")
        load(urls, args, tokens, args.warmup, "warm-up")
        runs: dict[str, list[dict[str, Any]]] = {"two_workers": [], "one_worker": []}
        for round_ in range(args.rounds):
            if round_:
                procs.start("serve2", serve2)
                wait_http(f"{urls[1]}/healthz")
            runs["two_workers"].append(
                load(urls, args, tokens, args.duration, "two workers", procs)
            )
            procs.stop("serve2")
            runs["one_worker"].append(
                load(urls[:1], args, tokens, args.duration, "one worker", procs)
            )
        results["runs"] = runs
        for key, measured in runs.items():  # the median round by throughput (lower middle)
            results[key] = sorted(measured, key=lambda r: r["rps"])[(len(measured) - 1) // 2]
        results["loadavg_at_end"] = loadavg()
    finally:
        procs.stop_all()
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=f"hc:{appid}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
            client.close()
        if not args.keep:
            admin(args.pg, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    report(results)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2) + "\n")
        log(f"wrote {args.json_out}")


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"mixed load, {results['when']}, {results['cpus']} CPUs, load average at start "
        f"{results['loadavg_at_start']}, at end {results.get('loadavg_at_end', '?')}"
    )
    print("| setup | requests/s | p50 ms | p90 ms | p99 ms | max ms | expected replies | "
          "errors | machine busy | CPU of serve1 / serve2 / scheduler |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    runs = results.get("runs", {})
    for key, label in (
        ("two_workers", "2 serve + scheduler"),
        ("one_worker", "1 serve + scheduler"),
    ):
        for i, r in enumerate(runs.get(key, [])):
            share = 100 * r["matched"] / r["responses"] if r["responses"] else 0.0
            cpu = r.get("cpu_pct", {})
            shares = " / ".join(
                f"{cpu[n]:.0f} %" if n in cpu else "–" for n in ("serve1", "serve2", "scheduler")
            )
            print(f"| {label}, round {i + 1} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                  f"{r['p90_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {share:.1f}% | "
                  f"{r['non200'] + r['socket_errors']} | {r.get('machine_busy_pct', '?')} % | "
                  f"{shares} |")  # fmt: skip
    two, one = results.get("two_workers"), results.get("one_worker")
    if two and one and one["rps"]:
        print(
            f"\nmedian rounds: two workers {two['rps']:.0f} requests/s, "
            f"p99 {two['p99_ms']:.0f} ms; one worker {one['rps']:.0f} requests/s, "
            f"p99 {one['p99_ms']:.0f} ms: "
            f"{two['rps'] / one['rps']:.2f}× the throughput"
        )
    print("\nBENCH_JSON " + json.dumps(results))


if __name__ == "__main__":
    main()
