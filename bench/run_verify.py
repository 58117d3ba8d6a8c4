"""The guard-verification benchmark (issue 7) in one command; see bench/README.md.

    .venv/bin/python bench/run_verify.py [--state memory|redis] [--json-out FILE]

1. Seeds a fresh SQLite database in a temp dir (bench/access_seed.py): a gate, 1,000
   students with pass codes valid for the run, 200 guards bound to openids. With Redis
   state the codes are on record there, as codes the bot issues are (campus/access/issued.py):
   scans recognise them without a signature check; `--unrecorded` leaves them off record.
2. Starts `healthbot serve` and the echo reference (bench/echo_server.py), both pinned to
   core 0, and puts every guard on duty through the callback (`上岗 BGATE`). With Redis
   state and no --redis-url, the bot's Redis is a redis-server of the run's own, pinned to
   core 1 with the load.
3. From core 1: wrk (closed loop, `-t1 -cN --latency`) with bench/wrk/verify.lua against the
   bot, then the same requests against the echo server; then the open-loop generator
   (bench/verify_load.py) at fixed rates, the bot and then the echo server; each request's
   timeline is kept in the temp dir (latencies-*.txt). With --open-rounds N, then N short
   open-loop runs of each in turn at every rate, for the median of their p99s.
4. Checks that every answered scan left an access record, prints the table, writes JSON.

Per-user rate limiting is lifted for the run (HEALTHBOT_RATE_LIMIT_PER_MINUTE): 200 guards
each scanning several times a second is not what the limiter is for. Every process started
here is stopped at the end, even on failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = Path(sys.executable)
HEALTHBOT = PY.with_name("healthbot")
TOKEN = "verify-bench-token"
# A round of the open loop is calm when the host took less than this share of either core
# meanwhile (steal, /proc/stat).
CALM_STEAL_PCT = 1.0

sys.path.insert(0, str(BENCH))
from benchlib import py_spy  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process, all its threads (the WAL checkpoints run in
    one), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    return sum(cpu_split(pid))


def cpu_ticks() -> list[tuple[int, int]]:
    """Per core, from /proc/stat: (ticks stolen, all ticks). Steal is the time the
    hypervisor gave the core to someone else while this machine had work for it."""
    cores = []
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(f) for f in fields[:8]]  # user … steal; guest time is in user
            cores.append((ticks[7], sum(ticks)))
    return cores


def steal_pct(before: list[tuple[int, int]]) -> list[float]:
    """The share of each core's time stolen since `before` (cpu_ticks()), in percent."""
    return [
        round(100 * (s1 - s0) / max(1, t1 - t0), 1)
        for (s0, t0), (s1, t1) in zip(before, cpu_ticks(), strict=True)
    ]


def bench_json(output: str) -> dict[str, Any]:
    match = re.search(r"^BENCH_JSON (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no BENCH_JSON in:\n{output[-2000:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def run(cmd: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:4])}… exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout} s")


def private_redis(port: int, tmp: Path) -> subprocess.Popen[bytes]:
    """A redis-server of the run's own on `port`, pinned to core 1, keeping nothing on disk;
    the caller stops it (its process group) with the servers."""
    log_file = (tmp / "redis.log").open("wb")
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "1",
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        )
        if answer.stdout.strip() == "PONG":
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError(f"redis-server on port {port} did not start: see {tmp / 'redis.log'}")


def records(db_path: Path) -> int:
    with sqlite3.connect(db_path) as db:
        count: int = db.execute("select count(*) from access_records").fetchone()[0]
    return count


@contextlib.contextmanager
def lock_holder(db_path: Path, hold: float, every: float) -> Iterator[list[int]]:
    """Another writer on `db_path`: it holds the write lock for `hold` seconds every `every`
    seconds while the block runs; yields a list that ends up holding the count of holds."""
    stop, count = threading.Event(), [0]

    def hold_now() -> None:
        db = sqlite3.connect(db_path, isolation_level=None, timeout=10)
        try:
            while not stop.wait(max(every - hold, 0.01)):
                db.execute("BEGIN IMMEDIATE")
                stop.wait(hold)
                db.execute("ROLLBACK")
                count[0] += 1
        finally:
            db.close()

    thread = threading.Thread(target=hold_now, name="lock-holder", daemon=True)
    thread.start()
    try:
        yield count
    finally:
        stop.set()
        thread.join(timeout=30)


def settle(pid: int, limit: float = 60) -> None:
    """Wait until the process is idle: what it took in before the load stopped is done."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        if cpu_seconds(pid) - before < 0.05:
            return


def callgrind_totals(base: Path, dump: int) -> dict[str, int]:
    """Instructions per thread in a callgrind dump (--separate-threads): {"01": Ir, …}."""
    totals = {}
    for path in sorted(base.parent.glob(f"{base.name}.{dump}-*")):
        match = re.search(r"^summary: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        if match:
            totals[path.name.rsplit("-", 1)[1]] = int(match.group(1))
    if not totals:
        raise RuntimeError(f"no callgrind dump {base.name}.{dump}-* in {base.parent}")
    return totals


# The signature check's entry in a callgrind dump: the gate's verifier (ed25519-zebra's
# Python function), or libsodium's, which checked codes before it.
SIGNATURE_CHECKS = ("ed25519_zebra::__pyfunction_ed_verify", "crypto_sign_ed25519_verify_detached")


def inclusive(path: Path, *functions: str) -> int:
    """The instructions spent in `functions` and what they called, from callgrind_annotate
    (the largest, for functions that call each other)."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = [
        int(m.group(1).replace(",", ""))
        for function in functions
        for m in re.finditer(rf"^\s*([\d,]+) .*:{re.escape(function)} ", out, re.MULTILINE)
    ]
    return max(found, default=0)


def count_instructions(
    args: argparse.Namespace,
    tmp: Path,
    pids: dict[str, int],
    urls: dict[str, str],
    wrk: Callable[..., dict[str, Any]],
    open_loop: Callable[..., dict[str, Any]],
) -> None:
    """--callgrind: instructions per request, bot and echo, closed loop and lone.

    Both servers run under callgrind with instrumentation off; it is switched on for one load
    at a time and the counts dumped once the server is idle again. Closed loop: wrk with
    --connections for --duration s (the bot's requests are the access records it wrote; the
    echo's are wrk's count plus the connections' last requests, sent before wrk stopped and
    answered after); the guards' `帮助` to the bot the same way. Lone: the open-loop generator at
    --callgrind-rate a second, where each scan meets an idle server, as at a real gate. The
    event loop's thread is counted apart from the others (SQLite's checkpoints run on a
    worker thread)."""
    results: dict[str, Any] = {"settings": {"connections": args.connections}}
    dumps = {"bot": 0, "echo": 0}
    log("warm-up under callgrind, not counted (10 s each)")
    for name in ("bot", "echo"):
        wrk(urls[name], 10, name)
    runs = (
        ("bot", "closed"),
        ("echo", "closed"),
        ("bot", "help"),  # `帮助` from the guards, closed loop: the callback without a scan
        ("bot", "lone"),
        ("echo", "lone"),
    )
    for name, regime in runs:
        pid = pids[name]
        settle(pid)
        subprocess.run(["callgrind_control", "-z", str(pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-i", "on", str(pid)], capture_output=True, check=True)
        log(f"{regime} {name} under callgrind: {args.duration} s")
        before = records(tmp / "bench.db")
        if regime == "lone":
            load = open_loop(urls[name], name, args.callgrind_rate, args.duration)
            settle(pid)
            requests = load["answered"]
        else:
            load = wrk(
                urls[name], args.duration, name, "help_guards" if regime == "help" else "verify"
            )
            settle(pid)
            # A scan's access record counts it exactly; otherwise each connection's last
            # request, sent before wrk stopped, was answered after.
            requests = (
                records(tmp / "bench.db") - before
                if (name, regime) == ("bot", "closed")
                else load["requests"] + args.connections
            )
        subprocess.run(["callgrind_control", "-d", str(pid)], capture_output=True, check=True)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(pid)], capture_output=True, check=True
        )
        dumps[name] += 1
        base = tmp / f"cg-{name}"
        totals = callgrind_totals(base, dumps[name])
        loop_thread = totals.get("01", 0)
        ed25519 = inclusive(Path(f"{base}.{dumps[name]}-01"), *SIGNATURE_CHECKS)
        results[f"{name}_{regime}"] = {
            "requests": requests,
            "loop_thread_per_request": round(loop_thread / max(1, requests)),
            "other_threads_per_request": round(
                (sum(totals.values()) - loop_thread) / max(1, requests)
            ),
            "ed25519_per_request": round(ed25519 / max(1, requests)),
        }
    print(
        f"\ninstructions per request (callgrind; {args.connections} connections closed loop, "
        f"{args.callgrind_rate}/s lone)"
    )
    print(f"{'':14}{'requests':>10}{'loop thread':>14}{'other threads':>15}{'of it Ed25519':>15}")
    for key, r in results.items():
        if key != "settings":
            print(
                f"{key:14}{r['requests']:>10}{r['loop_thread_per_request']:>14,}"
                f"{r['other_threads_per_request']:>15,}{r['ed25519_per_request']:>15,}"
            )
    for regime in ("closed", "lone"):
        bot, echo = results[f"bot_{regime}"], results[f"echo_{regime}"]
        pct = round(100 * echo["loop_thread_per_request"] / bot["loop_thread_per_request"], 1)
        results[f"bot_over_echo_{regime}_pct"] = pct
        print(f"bot/echo by the loop thread's instructions per request, {regime}: {pct}%")
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--state", choices=["memory", "redis"], default="memory")
    p.add_argument(
        "--redis-url",
        help="the Redis to use (flushed first); by default a private redis-server on "
        "--redis-port, pinned to core 1 with the load",
    )
    p.add_argument("--redis-port", type=int, default=18390)
    p.add_argument("--duration", type=int, default=20)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--rates", default="100,200", help="open-loop rates, requests/s")
    p.add_argument("--guards", type=int, default=200)
    p.add_argument("--persons", type=int, default=1000)
    p.add_argument("--bot-port", type=int, default=18381)
    p.add_argument("--echo-port", type=int, default=18382)
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument(
        "--nice", type=int, default=0, help="run servers and load at this niceness (root: < 0)"
    )
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample the bot with py-spy during its wrk scan run; collapsed stacks to FILE "
        "(that run's figures are then not comparable)",
    )
    p.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="then this many short bot/echo wrk runs in turn (--pair-seconds each): the median "
        "of their CPU ratios, steadier than one pair on a machine whose speed drifts",
    )
    p.add_argument("--pair-seconds", type=int, default=5)
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="instead of timing: run both servers under valgrind's callgrind and count the "
        "instructions each spends per request, closed loop and lone; repeatable whatever "
        "else the machine does (see bench/README.md)",
    )
    p.add_argument("--callgrind-rate", type=float, default=5.0, help="--callgrind's lone rate")
    p.add_argument(
        "--unrecorded",
        action="store_true",
        help="seed codes that are not on record (campus/access/issued.py), so that every scan "
        "checks a signature; with --state memory they never are",
    )
    p.add_argument(
        "--lock-holds",
        type=float,
        default=0.0,
        metavar="MS",
        help="during the bot's open-loop runs, another connection holds the SQLite file's "
        "write lock for MS milliseconds every --lock-every seconds, as a bulk import, the "
        "scheduler's roll-over or a WAL restart on a slow disk do",
    )
    p.add_argument("--lock-every", type=float, default=2.0)
    p.add_argument(
        "--open-rounds",
        type=int,
        default=0,
        help="then, at each rate, this many short open-loop runs of the bot and the echo in "
        "turn (--open-round-seconds each): the p99 of each, and its median",
    )
    p.add_argument("--open-round-seconds", type=int, default=10)
    p.add_argument(
        "--no-help-baseline",
        dest="help_baseline",
        action="store_false",
        help="skip the `帮助` run that shows what the callback costs without verification",
    )
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="healthbot-verify-"))
    nice = ["nice", "-n", str(args.nice)] if args.nice else []
    env = {
        **os.environ,
        "HEALTHBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
        "HEALTHBOT_WECHAT_TOKEN": TOKEN,
        "HEALTHBOT_WECHAT_APPID": "wxverifybench0001",
        "HEALTHBOT_DATA_KEY": "verify-bench-data-key",
        "HEALTHBOT_ALLOW_INSECURE_DEFAULTS": "1",
        "HEALTHBOT_RATE_LIMIT_PER_MINUTE": "100000000",
        "HEALTHBOT_WECHAT_API_BASE": "http://127.0.0.1:9",  # nothing leaves the machine
    }
    procs: list[subprocess.Popen[bytes]] = []
    if args.state == "redis" and args.redis_url is None:
        # The bot's Redis runs beside the load on core 1, as a separate host's would: on
        # core 0 it would take the CPU the bot is measured by, and the machine's own Redis
        # may run anywhere and serve others meanwhile.
        procs.append(private_redis(args.redis_port, tmp))
        args.redis_url = f"redis://127.0.0.1:{args.redis_port}/0"
    if args.state == "redis":
        env["HEALTHBOT_REDIS_URL"] = args.redis_url
        run(["redis-cli", "-u", args.redis_url, "flushdb"], env, 10)
    else:
        env.pop("HEALTHBOT_REDIS_URL", None)
    bot_url = f"http://127.0.0.1:{args.bot_port}/wechat"
    echo_url = f"http://127.0.0.1:{args.echo_port}/wechat"
    tokens = tmp / "tokens.txt"
    results: dict[str, Any] = {
        "loadavg_at_start": loadavg(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    try:
        log(f"seeding in {tmp}")
        log(
            run(
                [
                    str(PY),
                    "bench/access_seed.py",
                    "--out",
                    str(tmp),
                    "--guards",
                    str(args.guards),
                    "--persons",
                    str(args.persons),
                    *(["--unrecorded"] if args.unrecorded else []),
                ],
                env,
                300,
            ).strip()
        )

        def grind(name: str) -> list[str]:
            """The valgrind prefix of a server's command line (--callgrind), else nothing."""
            if not args.callgrind:
                return []
            return [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--separate-threads=yes",
                f"--callgrind-out-file={tmp}/cg-{name}",
            ]

        for cmd, name in (
            (
                [
                    *nice,
                    "taskset",
                    "-c",
                    "0",
                    *grind("bot"),
                    str(PY),  # the console script run by its interpreter, as its #! line does
                    str(HEALTHBOT),
                    "serve",
                    "--port",
                    str(args.bot_port),
                    "--no-scheduler",
                ],
                "bot",
            ),
            (
                [
                    *nice,
                    "taskset",
                    "-c",
                    "0",
                    *grind("echo"),
                    str(PY),
                    "bench/echo_server.py",
                    "--port",
                    str(args.echo_port),
                    "--token",
                    TOKEN,
                ],
                "echo",
            ),
        ):
            out = (tmp / f"{name}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_http(f"http://127.0.0.1:{args.bot_port}/healthz", 300 if args.callgrind else 60)
        log(
            run(
                [
                    str(PY),
                    "bench/access_seed.py",
                    "--out",
                    str(tmp),
                    "--no-seed",
                    "--guards",
                    str(args.guards),
                    "--url",
                    bot_url,
                ],
                env,
                120,
            ).strip()
        )

        pids = {"bot": procs[-2].pid, "echo": procs[-1].pid}  # the two servers just started

        def wrk(url: str, seconds: int, mode: str, script: str = "verify") -> dict[str, Any]:
            if script.startswith("help"):  # the spine alone: `帮助`, no database write
                # From any follower; `help_guards`: from the guards who scan, whose principals
                # the scans have cached.
                who = [f"users={args.guards}", "prefix=obguard"]
                if script == "help":
                    who = ["users=1000", "prefix=ohelp"]
                extra = [*who, "threads=1", f"mode={mode}"]
                cmd = [
                    *nice,
                    "taskset",
                    "-c",
                    "1",
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    "bench/wrk/help.lua",
                    url,
                    "--",
                    f"token={TOKEN}",
                    *extra,
                ]
                return bench_json(run(cmd, env, seconds + 60))
            cmd = [
                *nice,
                "taskset",
                "-c",
                "1",
                "wrk",
                "-t1",
                f"-c{args.connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                "bench/wrk/verify.lua",
                url,
                "--",
                f"token={TOKEN}",
                f"users={args.guards}",
                "prefix=obguard",
                "threads=1",
                f"tokens={tokens}",
                f"mode={mode}",
            ]
            return bench_json(run(cmd, env, seconds + 60))

        def open_loop(
            url: str, mode: str, rate: float, seconds: int, latencies: Path | None = None
        ) -> dict[str, Any]:
            cmd = [
                *nice,
                "taskset",
                "-c",
                "1",
                str(PY),
                "bench/verify_load.py",
                "--url",
                url,
                "--tokens",
                str(tokens),
                "--rate",
                str(rate),
                "--duration",
                str(seconds),
                "--guards",
                str(args.guards),
                "--mode",
                mode,
                "--token",
                TOKEN,
                *(["--latencies", str(latencies)] if latencies else []),
            ]
            return bench_json(run(cmd, env, seconds + 120))

        if args.callgrind:
            count_instructions(args, tmp, pids, {"bot": bot_url, "echo": echo_url}, wrk, open_loop)
            return

        log("warm-up (5 s)")
        wrk(bot_url, 5, "bot")
        wrk(bot_url, 5, "bot", "help")
        runs: tuple[tuple[str, str, str, str], ...] = (
            ("bot", bot_url, "bot", "verify"),
            ("echo", echo_url, "echo", "verify"),
        )
        if args.help_baseline:
            runs += (("bot_help", bot_url, "bot", "help"),)

        def measured(name: str, url: str, mode: str, script: str, seconds: int) -> dict[str, Any]:
            pid = pids[name.split("_")[0]]
            before = cpu_split(pid)
            ticks = cpu_ticks()
            spy = None
            if args.profile is not None and name == "bot":
                spy = py_spy(pid, args.profile, seconds)
            result = wrk(url, seconds, mode, script)
            if spy is not None:
                spy.wait(timeout=60)
            after = cpu_split(pid)
            result["steal_pct"] = steal_pct(ticks)
            used = sum(after) - sum(before)
            # Time in the kernel (system calls: sockets, SQLite's writes) is invisible to
            # callgrind's counts; its share says what they leave out.
            result["system_pct"] = round(100 * (after[1] - before[1]) / max(used, 1e-9), 1)
            # The CPU the server spent per request does not depend on how much of core 0
            # other processes took meanwhile: 1 s / that is the rate one whole core allows.
            result["cpu_us_per_request"] = round(1e6 * used / max(1, result["requests"]), 1)
            result["server_core_share_pct"] = round(100 * used / result["duration_s"], 1)
            result["one_core_rps"] = round(1e6 / result["cpu_us_per_request"], 1)
            return result

        for name, url, mode, script in runs:
            log(f"wrk {name} ({script}): {args.duration} s, {args.connections} connections")
            results[f"{name}_wrk"] = measured(name, url, mode, script, args.duration)
        if args.pairs:
            log(f"{args.pairs} pairs of bot and echo runs, {args.pair_seconds} s each")
            ratios, rates, pairs, stolen = [], [], [], []
            served = {"bot": [0, 0.0], "echo": [0, 0.0]}  # requests, seconds
            for _ in range(args.pairs):
                bot_run = measured("bot", bot_url, "bot", "verify", args.pair_seconds)
                echo_run = measured("echo", echo_url, "echo", "verify", args.pair_seconds)
                pairs.append([bot_run["cpu_us_per_request"], echo_run["cpu_us_per_request"]])
                stolen.append([bot_run["steal_pct"][0], echo_run["steal_pct"][0]])
                ratios.append(round(100 * pairs[-1][1] / pairs[-1][0], 1))
                rates.append(round(100 * bot_run["rps"] / echo_run["rps"], 1))
                for name, one in (("bot", bot_run), ("echo", echo_run)):
                    served[name][0] += one["requests"]
                    served[name][1] += one["duration_s"]
            results["pairs_cpu_us_bot_echo"] = pairs
            results["pairs_cpu_pct"] = ratios
            results["pairs_core0_steal_pct"] = stolen
            results["pairs_rps_pct"] = rates
            # All the pairs together: each server's requests over its total time, taken in
            # turns with the other's, so that the machine's drift falls on both alike.
            bot_rate, echo_rate = (n / max(s, 1e-9) for n, s in served.values())
            results["pairs_pooled_rps_pct"] = round(100 * bot_rate / max(echo_rate, 1e-9), 1)

        def open_measured(
            name: str, url: str, rate: float, seconds: int, latencies: Path | None
        ) -> dict[str, Any]:
            before = cpu_seconds(pids[name])
            ticks = cpu_ticks()
            holding = (
                lock_holder(tmp / "bench.db", args.lock_holds / 1000, args.lock_every)
                if args.lock_holds and name == "bot"
                else contextlib.nullcontext([0])
            )
            with holding as holds:
                result = open_loop(url, name, rate, seconds, latencies)
            result["steal_pct"] = steal_pct(ticks)
            if args.lock_holds and name == "bot":
                result["lock_holds"] = holds[0]
            # At these rates batches hold a scan or two: what a scan costs at a real gate.
            used = cpu_seconds(pids[name]) - before
            result["cpu_us_per_request"] = round(1e6 * used / max(1, result["sent"]), 1)
            return result

        rates = [float(r) for r in args.rates.split(",")]
        for rate in rates:
            for name, url in (("bot", bot_url), ("echo", echo_url)):
                log(f"open loop {name}: {rate:.0f}/s for {args.duration} s")
                results[f"{name}_open_{rate:.0f}"] = open_measured(
                    name, url, rate, args.duration, tmp / f"latencies-{name}-{rate:.0f}.txt"
                )
        if args.open_rounds:
            # The tail in turns: a stall of the host's lands on one short round, not on the
            # whole figure, and the echo beside each round shows what the machine allowed.
            for rate in rates:
                log(
                    f"{args.open_rounds} open-loop rounds of bot and echo at {rate:.0f}/s, "
                    f"{args.open_round_seconds} s each"
                )
                rounds = []
                for _ in range(args.open_rounds):
                    pair = {
                        name: open_measured(name, url, rate, args.open_round_seconds, None)
                        for name, url in (("bot", bot_url), ("echo", echo_url))
                    }
                    rounds.append(
                        {
                            f"{name}_{field}": one[field]
                            for name, one in pair.items()
                            for field in (
                                "p50_ms",
                                "p99_ms",
                                "p99_host_quiet_ms",
                                "host_touched",
                                "host_pauses_ms",
                                "steal_pct",
                                "matched",
                                "other",
                                "sent",
                            )
                        }
                    )
                results[f"open_rounds_{rate:.0f}"] = rounds
        with sqlite3.connect(tmp / "bench.db") as db:
            results["access_records"] = db.execute(
                "select count(*) from access_records"
            ).fetchone()[0]
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    results["loadavg_at_end"] = loadavg()
    answered_by_bot = sum(
        v.get("matched", 0) + v.get("other", 0)
        for k, v in results.items()
        if k.startswith("bot_") and not k.startswith("bot_help") and isinstance(v, dict)
    )
    rounds_run = [
        (f"{key} round {i + 1}", one)
        for key, value in results.items()
        if key.startswith("open_rounds_") and isinstance(value, list)
        for i, one in enumerate(value)
    ]
    answered_by_bot += sum(one["bot_matched"] + one["bot_other"] for _, one in rounds_run)
    bot, echo = results["bot_wrk"], results["echo_wrk"]
    checked = [(k, v) for k, v in results.items() if k.startswith("bot") and isinstance(v, dict)]
    checked += [
        (key, {"matched": one["bot_matched"], "sent": one["bot_sent"]}) for key, one in rounds_run
    ]
    for key, value in checked:
        if "matched" in value:
            total = value.get("requests") or value.get("sent") or 0
            if total and value["matched"] < 0.99 * total:
                print(f"WARNING: {key}: only {value['matched']}/{total} expected replies")
    print()
    print(
        f"state: {args.state}; load average {' '.join(results['loadavg_at_start'])} → "
        f"{' '.join(results['loadavg_at_end'])}"
    )
    # Steal: how much of each core the hypervisor took for other guests meanwhile. On a
    # shared host it, more than the code, decides a tail: answers wait while it lasts.
    # "p99 host quiet": the open loop's p99 over the answers the host took no time from
    # (no steal, no pause of the load's core; bench/verify_load.py).
    print(
        f"{'':28}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'p99 host quiet':>16}{'passes':>10}"
        f"{'steal % core 0·1':>19}"
    )
    for key in [k for k in results if k.endswith("_wrk") or "_open_" in k]:
        r = results[key]
        rps = r.get("rps") or r.get("offered_rps")
        steal_cell = "·".join(f"{p:g}" for p in r["steal_pct"])
        quiet = r.get("p99_host_quiet_ms") or "–"  # not in wrk's; None: the host touched all
        print(
            f"{key:28}{rps:>10}{r['p50_ms']:>10}{r['p99_ms']:>10}{quiet:>16}"
            f"{r['matched']:>10}{steal_cell:>19}"
        )
    print(f"bot/echo throughput: {100 * bot['rps'] / echo['rps']:.1f}%")
    for name, r in [(k.removesuffix("_wrk"), v) for k, v in results.items() if k.endswith("_wrk")]:
        print(
            f"{name}: {r['cpu_us_per_request']} µs CPU per request "
            f"({r['system_pct']}% in the kernel), "
            f"{r['server_core_share_pct']}% of core 0 while measured, "
            f"≈ {r['one_core_rps']} req/s on a whole core"
        )
    for key in [k for k in results if "_open_" in k]:
        print(
            f"{key}: {results[key]['cpu_us_per_request']} µs CPU per request (open loop); "
            f"the generator's own send lag, p99: {results[key]['send_lag_p99_ms']} ms; "
            f"answers over 10 ms came in bursts of {results[key]['over_10ms_bursts']}, "
            f"{results[key]['slow_host_touched']} of them while the host took time "
            f"(pauses of the load's core: {results[key]['host_pauses_ms']} ms)"
            + (
                f"; the write lock held {args.lock_holds:.0f} ms, "
                f"{results[key]['lock_holds']} times"
                if "lock_holds" in results[key]
                else ""
            )
        )
    print(f"per-request open-loop timelines: {tmp}/latencies-*.txt")
    results["bot_over_echo_cpu_pct"] = round(
        100 * echo["cpu_us_per_request"] / bot["cpu_us_per_request"], 1
    )
    print(f"bot/echo by CPU per request: {results['bot_over_echo_cpu_pct']}%")
    if "pairs_cpu_pct" in results:
        ratios = sorted(results["pairs_cpu_pct"])
        results["pairs_cpu_pct_median"] = round(statistics.median(ratios), 1)
        print(
            f"bot/echo by CPU per request in {len(ratios)} short pairs: median "
            f"{results['pairs_cpu_pct_median']}% (from {ratios[0]}% to {ratios[-1]}%)"
        )
        rates = sorted(results["pairs_rps_pct"])
        results["pairs_rps_pct_median"] = round(statistics.median(rates), 1)
        print(
            f"bot/echo by req/s in the same pairs: median "
            f"{results['pairs_rps_pct_median']}% (from {rates[0]}% to {rates[-1]}%); "
            f"all of them together: {results['pairs_pooled_rps_pct']}%"
        )
        stolen = [p for pair in results["pairs_core0_steal_pct"] for p in pair]
        print(f"core 0 stolen in the pairs' runs: from {min(stolen):g}% to {max(stolen):g}%")
    for key in [k for k in results if k.startswith("open_rounds_")]:
        rounds = results[key]
        summary = {}
        for name in ("bot", "echo"):
            p99s = [r[f"{name}_p99_ms"] for r in rounds]
            quiet = [v for r in rounds if (v := r[f"{name}_p99_host_quiet_ms"]) is not None]
            # The rounds the host all but left alone: what the code gives when it is not
            # waiting for the machine.
            calm = [
                r[f"{name}_p99_ms"] for r in rounds if max(r[f"{name}_steal_pct"]) < CALM_STEAL_PCT
            ]
            summary[name] = {
                "calm_rounds": len(calm),
                "calm_rounds_p99_under_10ms": sum(1 for v in calm if v < 10),
                "calm_p99_max_ms": max(calm, default=None),
                "p99_median_ms": round(statistics.median(p99s), 3),
                "p99_range_ms": [min(p99s), max(p99s)],
                "rounds_p99_under_10ms": sum(1 for v in p99s if v < 10),
                "p99_host_quiet_median_ms": round(statistics.median(quiet), 3) if quiet else None,
                "core0_steal_pct": [r[f"{name}_steal_pct"][0] for r in rounds],
            }
        results[f"{key}_summary"] = summary
        bot_s, echo_s = summary["bot"], summary["echo"]
        print(
            f"{len(rounds)} open-loop rounds at {key.removeprefix('open_rounds_')}/s, "
            f"p99 bot · echo: median {bot_s['p99_median_ms']} · {echo_s['p99_median_ms']} ms "
            f"(bot from {bot_s['p99_range_ms'][0]} to {bot_s['p99_range_ms'][1]} ms); "
            f"under 10 ms in {bot_s['rounds_p99_under_10ms']} · "
            f"{echo_s['rounds_p99_under_10ms']} rounds; host quiet, median "
            f"{bot_s['p99_host_quiet_median_ms']} · {echo_s['p99_host_quiet_median_ms']}"
            f" ms; core 0 stolen in the bot's rounds: "
            f"{' '.join(f'{v:g}' for v in bot_s['core0_steal_pct'])}%"
        )
        print(
            f"  in the rounds the host took under {CALM_STEAL_PCT:g}% of either core: p99 under "
            f"10 ms in {bot_s['calm_rounds_p99_under_10ms']} of {bot_s['calm_rounds']} "
            f"(at most {bot_s['calm_p99_max_ms'] or '–'} ms) · the echo's in "
            f"{echo_s['calm_rounds_p99_under_10ms']} of {echo_s['calm_rounds']} "
            f"(at most {echo_s['calm_p99_max_ms'] or '–'} ms)"
        )
    print(
        f"access records written: {results['access_records']} "
        f"(scans answered in the measured runs and rounds: {answered_by_bot}, plus warm-up and "
        "pairs)"
    )
    results["bot_over_echo_pct"] = round(100 * bot["rps"] / echo["rps"], 1)
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
