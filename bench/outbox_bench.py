"""Outbox benchmark: broadcast to 100,000 persons through the emulated WeChat, then again with
the dispatcher SIGKILLed halfway and restarted. Counts come from the emulated API's own log.

    python bench/outbox_bench.py                      # PostgreSQL + Redis, 100,000 persons
    python bench/outbox_bench.py --persons 10000 --window
    python bench/outbox_bench.py --database-url sqlite+aiosqlite:///bench-outbox.db

Processes: the emulated WeChat (bench/outbox_sim.py, 20 ms added to every API call), and the
dispatcher as production runs it (`healthbot scheduler`). The broadcast is queued with
`healthbot broadcast --urgent` (urgent, so quiet hours don't hold it when this runs at night).
Without --window the persons last wrote 3 days ago, so every push is a template message (what
a campus-wide notice mostly is); with --window they wrote an hour ago: customer-service texts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from outbox_common import APPID, SECRET, TEMPLATE_ID, TOKEN, UNIT_CODE, openid
from sqlalchemy import delete, func, insert, select

from storage.engine import create_engine, session_factory
from storage.migrate import upgrade
from storage.models import OutboxMessage, Person, Unit, WeChatAccount

HERE = Path(__file__).resolve().parent
HEALTHBOT = Path(sys.executable).parent / "healthbot"
SUBUNITS = 100


@dataclass
class Run:
    name: str
    persons: int
    enqueue_seconds: float = 0.0
    drain_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    rss_samples_mb: list[float] = field(default_factory=list)
    killed_at_sent: int | None = None
    sending_at_kill: int | None = None
    restart_seconds: float | None = None
    resent_rows: int = 0
    dispatcher_cpu_seconds: float = 0.0
    sim_cpu_seconds: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    deliveries: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.persons / self.drain_seconds if self.drain_seconds else 0.0


# -- database ---------------------------------------------------------------------------------


async def recreate_database(url: str) -> None:
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 (set-up, no load)
        return
    import asyncpg

    parts = urlsplit(url.replace("+asyncpg", ""))
    name = parts.path.lstrip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


async def seed(url: str, persons: int, window: bool) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    sessions = session_factory(engine)
    seen = datetime.now(UTC) - (timedelta(hours=1) if window else timedelta(days=3))
    async with sessions.begin() as s:
        root = Unit(code=UNIT_CODE, name="Outbox bench campus")
        s.add(root)
        await s.flush()
        subunits = [
            Unit(code=f"OB{i:03d}", name=f"Bench unit {i}", parent_id=root.id)
            for i in range(SUBUNITS)
        ]
        s.add_all(subunits)
        await s.flush()
        unit_ids = [u.id for u in subunits]
    chunk = 5000
    for start in range(0, persons, chunk):
        async with sessions.begin() as s:
            await s.execute(
                insert(Person),
                [
                    {
                        "person_no": f"OB{i:07d}",
                        "name": f"Bench {i}",
                        "category": "student",
                        "unit_id": unit_ids[i % SUBUNITS],
                        "id_hash": f"ob{i}",
                        "id_cipher": b"-",
                        "locale": "zh_CN" if i % 5 else "en",
                    }
                    for i in range(start, min(persons, start + chunk))
                ],
            )
    async with sessions.begin() as s:
        ids = (await s.execute(select(Person.id).order_by(Person.id))).scalars().all()
    for start in range(0, len(ids), chunk):
        async with sessions.begin() as s:
            await s.execute(
                insert(WeChatAccount),
                [
                    {"openid": openid(n), "person_id": pid, "bound_at": seen, "last_seen_at": seen}
                    for n, pid in enumerate(ids[start : start + chunk], start)
                ],
            )
    await engine.dispose()


async def outbox_states(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            rows = await s.execute(
                select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
            )
            return {state: int(n) for state, n in rows}
    finally:
        await engine.dispose()


async def resent(url: str) -> int:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as s:
            n = await s.scalar(
                select(func.count()).where(
                    OutboxMessage.attempts > 1, OutboxMessage.state == "sent"
                )
            )
            return int(n or 0)
    finally:
        await engine.dispose()


async def clear_outbox(url: str) -> None:
    engine = create_engine(url)
    try:
        async with session_factory(engine).begin() as s:
            await s.execute(delete(OutboxMessage))
    finally:
        await engine.dispose()


# -- processes --------------------------------------------------------------------------------


def env_for(args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "HEALTHBOT_DATABASE_URL": args.database_url,
        "HEALTHBOT_REDIS_URL": args.redis_url or "",
        "HEALTHBOT_WECHAT_TOKEN": TOKEN,
        "HEALTHBOT_WECHAT_APPID": APPID,
        "HEALTHBOT_WECHAT_SECRET": SECRET,
        "HEALTHBOT_WECHAT_API_BASE": f"http://127.0.0.1:{args.sim_port}/sim/api",
        "HEALTHBOT_TEMPLATE_IDS": json.dumps({"broadcast": TEMPLATE_ID}),
        "HEALTHBOT_OUTBOX_CONCURRENCY": str(args.concurrency),
        "HEALTHBOT_OUTBOX_CLAIM_SECONDS": str(args.claim_seconds),
        "HEALTHBOT_DATA_KEY": "outbox-bench-data-key",
    }


def start_sim(args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """A fresh emulated WeChat; the shared state goes too (its access token would be stale)."""
    if args.redis_url:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        stale = list(client.scan_iter(match=f"hc:{APPID}:*"))  # only this benchmark's keys
        if stale:
            client.delete(*stale)
        client.close()
    cmd = [
        sys.executable,
        str(HERE / "outbox_sim.py"),
        "--port",
        str(args.sim_port),
        "--users",
        str(args.persons),
        "--latency-ms",
        str(args.latency_ms),
    ]
    if args.window:
        cmd.append("--window")
    proc = subprocess.Popen(cmd, cwd=HERE.parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            sim_json(args, "/sim/api/_control")
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the emulated WeChat did not start")


def sim_json(args: argparse.Namespace, path: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{args.sim_port}{path}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def start_dispatcher(args: argparse.Namespace, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fp:
        return subprocess.Popen(
            [str(HEALTHBOT), "scheduler"], env=env_for(args), stdout=fp, stderr=fp, cwd=HERE.parent
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def broadcast(args: argparse.Namespace, broadcast_id: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            str(HEALTHBOT),
            "broadcast",
            "--unit",
            UNIT_CODE,
            "--include-subunits",
            "--urgent",
            "--id",
            broadcast_id,
            "Outbox benchmark: please ignore this notice.",
        ],
        env=env_for(args),
        check=True,
        cwd=HERE.parent,
    )
    return time.perf_counter() - started


def drain(
    args: argparse.Namespace,
    run: Run,
    proc: subprocess.Popen[bytes],
    started: float,
    stop_when: Callable[[dict[str, int]], bool],
) -> dict[str, int]:
    """Poll the outbox until stop_when(states); sample the dispatcher's memory meanwhile."""
    last_print = 0.0
    while True:
        time.sleep(args.poll)
        states = asyncio.run(outbox_states(args.database_url))
        run.rss_samples_mb.append(round(rss_mb(proc.pid), 1))
        run.peak_rss_mb = max(run.peak_rss_mb, rss_mb(proc.pid, "VmHWM"))
        now = time.perf_counter()
        if now - last_print >= 5:
            last_print = now
            print(
                f"  {now - started:6.1f} s  {states}  rss {run.rss_samples_mb[-1]} MB", flush=True
            )
        if proc.poll() is not None:
            raise RuntimeError(f"the dispatcher exited with {proc.returncode}")
        if stop_when(states):
            return states


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def due(states: dict[str, int]) -> int:
    return states.get("pending", 0) + states.get("sending", 0)


# -- the two runs -----------------------------------------------------------------------------


def clean_run(args: argparse.Namespace, log: Path) -> Run:
    run = Run("clean", args.persons)
    sim = start_sim(args)
    sim_start_cpu = cpu_seconds(sim.pid)
    try:
        run.enqueue_seconds = broadcast(args, "clean")
        started = time.perf_counter()
        proc = start_dispatcher(args, log)
        try:
            run.states = drain(args, run, proc, started, lambda s: due(s) == 0)
            run.drain_seconds = time.perf_counter() - started
            run.peak_rss_mb = max(run.peak_rss_mb, rss_mb(proc.pid, "VmHWM"))
            run.dispatcher_cpu_seconds = cpu_seconds(proc.pid)
        finally:
            stop(proc)
        run.sim_cpu_seconds = cpu_seconds(sim.pid) - sim_start_cpu
        run.deliveries = sim_json(args, "/bench/deliveries")
    finally:
        sim.terminate()
        sim.wait()
    return run


def kill_run(args: argparse.Namespace, log: Path) -> Run:
    run = Run("sigkill", args.persons)
    asyncio.run(clear_outbox(args.database_url))
    sim = start_sim(args)
    try:
        run.enqueue_seconds = broadcast(args, "sigkill")
        started = time.perf_counter()
        proc = start_dispatcher(args, log)
        half = int(args.persons * args.kill_at)
        try:
            states = drain(args, run, proc, started, lambda s: s.get("sent", 0) >= half)
        except BaseException:
            stop(proc)
            raise
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed = time.perf_counter()
        after = asyncio.run(outbox_states(args.database_url))
        run.killed_at_sent = after.get("sent", 0)
        run.sending_at_kill = after.get("sending", 0)
        print(f"  SIGKILL at {killed - started:.1f} s: {after}", flush=True)
        proc = start_dispatcher(args, log)
        try:
            states = drain(args, run, proc, started, lambda s: due(s) == 0)
            run.drain_seconds = time.perf_counter() - started
            run.restart_seconds = time.perf_counter() - killed
            run.peak_rss_mb = max(run.peak_rss_mb, rss_mb(proc.pid, "VmHWM"))
        finally:
            stop(proc)
        run.states = states
        run.resent_rows = asyncio.run(resent(args.database_url))
        run.deliveries = sim_json(args, "/bench/deliveries")
    finally:
        sim.terminate()
        sim.wait()
    return run


def _per_push(cpu: float, run: Run) -> str:
    return f"{cpu * 1000 / run.persons:.2f}" if cpu else "–"


def report(args: argparse.Namespace, runs: list[Run]) -> str:
    db = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    channel = "customer-service text (in the 48-h window)" if args.window else "template"
    lines = [
        f"{args.persons:,} persons, {db}, Redis {'on' if args.redis_url else 'off'}, "
        f"{args.latency_ms} ms added per API call, concurrency {args.concurrency}, "
        f"channel: {channel}, claim {args.claim_seconds:g} s; load average at the start: "
        f"{args.load_before:.2f}, at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        "",
        "| run | enqueue | drain | pushes/s | dispatcher peak RSS | RSS first→last sample "
        "| delivered (users) | delivered twice | WeChat calls | CPU ms/push: dispatcher, "
        "emulated API |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        d = run.deliveries
        calls = sum(v for k, v in d.get("api_calls", {}).items() if "message" in k)
        first = run.rss_samples_mb[0] if run.rss_samples_mb else 0
        last = run.rss_samples_mb[-1] if run.rss_samples_mb else 0
        lines.append(
            f"| {run.name} | {run.enqueue_seconds:.1f} s | {run.drain_seconds:.1f} s "
            f"| {run.rate:,.0f} | {run.peak_rss_mb:.0f} MB | {first:.0f}→{last:.0f} MB "
            f"| {d.get('users', 0):,} | {d.get('users_twice_or_more', 0)} | {calls:,} "
            f"| {_per_push(run.dispatcher_cpu_seconds, run)}, "
            f"{_per_push(run.sim_cpu_seconds, run)} |"
        )
    for run in runs:
        if run.killed_at_sent is not None:
            lines.append("")
            lines.append(
                f"SIGKILL with {run.killed_at_sent:,} sent and {run.sending_at_kill} claimed "
                f"(`sending`); the restarted dispatcher finished {run.restart_seconds:.1f} s "
                f"after the kill (claims expire after {args.claim_seconds:g} s); "
                f"{run.resent_rows} rows were sent again after the crash; final states "
                f"{run.states}."
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/hb_bench_outbox"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--sim-port", type=int, default=18400)
    parser.add_argument("--window", action="store_true")
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--claim-seconds", type=float, default=15)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--only", choices=["clean", "sigkill"], default=None)
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]

    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log = results / f"outbox_{stamp}.log"
    print(f"seeding {args.persons:,} persons …", flush=True)
    started = time.perf_counter()
    asyncio.run(recreate_database(args.database_url))
    asyncio.run(seed(args.database_url, args.persons, args.window))
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
    runs = []
    if args.only in (None, "clean"):
        print("run 1: clean drain", flush=True)
        runs.append(clean_run(args, log))
    if args.only in (None, "sigkill"):
        print("run 2: SIGKILL halfway, restart", flush=True)
        runs.append(kill_run(args, log))
    text_report = report(args, runs)
    print(text_report)
    (results / f"outbox_{stamp}.json").write_text(
        json.dumps(
            {"args": vars(args), "runs": [r.__dict__ for r in runs], "report": text_report},
            indent=2,
            default=str,
        )
    )


if __name__ == "__main__":
    main()
