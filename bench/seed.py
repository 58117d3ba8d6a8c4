"""Seed the benchmark's bound users: units.csv + persons.csv, import, then bind over the callback.

    python bench/seed.py --dir /tmp/seed --url http://127.0.0.1:18081/wechat [--users 1000]

Settings come from the same HEALTHBOT_* environment as the server (database, data key, token).
Steps:
1. write units.csv and persons.csv (DESIGN.md "CSV registries") with valid resident IDs;
2. `healthbot import units FILE` then `healthbot import persons FILE`; if the importer fails
   (it is being written), insert the rows directly with the project's models and DataVault;
3. bind every openid (prefix obench) by sending `绑定 <person_no> <last 6 of ID>` through the
   callback, and check that each reply says 绑定成功.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

HEALTHBOT = Path(sys.executable).with_name("healthbot")


def write_csvs(folder: Path, users: int) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    units, persons = folder / "units.csv", folder / "persons.csv"
    with units.open("w", encoding="utf-8", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["code", "name", "parent_code", "responsible_nos"])
        w.writerow([B.UNIT_CODE, "压测学院", "", ""])
    with persons.open("w", encoding="utf-8", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(
            [
                "person_no",
                "name",
                "category",
                "unit_code",
                "id_number",
                "phone",
                "roles",
                "responsible_no",
                "home_place_code",
                "locale",
            ]
        )
        for u in range(users):
            w.writerow(
                [
                    B.person_no(u),
                    f"压测{u:04d}",
                    "student",
                    B.UNIT_CODE,
                    B.resident_id(u),
                    f"138{u:08d}",
                    "",
                    "",
                    "",
                    "zh_CN",
                ]
            )
    return units, persons


def import_with_cli(units: Path, persons: Path) -> bool:
    for kind, path in (("units", units), ("persons", persons)):
        try:
            done = subprocess.run(
                [str(HEALTHBOT), "import", kind, str(path)],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            print(f"seed: healthbot import {kind} failed to run: {exc}", file=sys.stderr)
            return False
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        print(f"seed: healthbot import {kind}: exit {done.returncode}: " + " | ".join(tail))
        if done.returncode != 0:
            return False
    return True


async def insert_directly(users: int) -> None:
    """The fallback: the project's own models, vault and migrations."""
    from sqlalchemy import select

    from bot.settings import Settings
    from campus.secrets import DataVault
    from storage.engine import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.models import Person, Unit

    settings = Settings()
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        vault = DataVault.from_setting(settings.data_key)
        async with session_factory(engine).begin() as session:
            unit = (
                await session.execute(select(Unit).where(Unit.code == B.UNIT_CODE))
            ).scalar_one_or_none()
            if unit is None:
                unit = Unit(code=B.UNIT_CODE, name="压测学院")
                session.add(unit)
                await session.flush()
            have = set((await session.execute(select(Person.person_no))).scalars())
            for u in range(users):
                if B.person_no(u) in have:
                    continue
                rid = B.resident_id(u)
                session.add(
                    Person(
                        person_no=B.person_no(u),
                        name=f"压测{u:04d}",
                        category="student",
                        unit_id=unit.id,
                        id_hash=vault.lookup_hash(rid, "id"),
                        id_cipher=vault.encrypt(rid),
                        phone_cipher=vault.encrypt(f"138{u:08d}"),
                        locale="zh_CN",
                    )
                )
        print(f"seed: inserted persons directly ({users} users)")
    finally:
        await engine.dispose()


async def bind_all(url: str, token: str, users: int, concurrency: int = 10) -> int:
    """Bind every openid; a reply that is not 绑定成功 (e.g. `success` when the bot took over
    4.5 s and answered late) is retried with a new MsgId: an account already bound to this
    person gets 绑定成功 again."""
    now = int(time.time())
    params = B.signed_query(token, now, "777001")
    base_msgid = 7_000_000_000_000_000 + (now % 100_000) * 100_000_000
    failures: list[str] = []
    retried = 0
    queue = list(range(users))

    async def bind_one(http: aiohttp.ClientSession, u: int) -> None:
        nonlocal retried
        rid = B.resident_id(u)
        text = f"绑定 {B.person_no(u)} {rid[-6:]}"
        last = ""
        for attempt in range(4):
            body = B.text_body(
                B.openid(B.BOUND_PREFIX, u), text, base_msgid + attempt * users + u, now
            )
            try:
                async with http.post(url, params=params, data=body) as resp:
                    reply = await resp.text()
                if resp.status == 200 and ("绑定成功" in reply or "此微信号已绑定" in reply):
                    return
                last = f"HTTP {resp.status}: {reply[:200]}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
            retried += 1
            await asyncio.sleep(0.5 * (attempt + 1))
        failures.append(f"user {u}: {last}")

    async def worker(http: aiohttp.ClientSession) -> None:
        while queue:
            await bind_one(http, queue.pop())

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
    for line in failures[:5]:
        print("seed: bind failed:", line, file=sys.stderr)
    print(
        f"seed: bound {users - len(failures)}/{users} openids through the callback"
        + (f" ({retried} retries after an unexpected reply)" if retried else "")
    )
    return len(failures)


def main() -> None:
    p = argparse.ArgumentParser(description="Seed and bind the benchmark's users.")
    p.add_argument("--dir", type=Path, required=True, help="where to write the CSV files")
    p.add_argument("--url", default=None, help="the callback URL; without it, no binding")
    p.add_argument("--users", type=int, default=1000)
    p.add_argument("--direct", action="store_true", help="skip `healthbot import`")
    args = p.parse_args()
    units, persons = write_csvs(args.dir, args.users)
    print(f"seed: wrote {units} and {persons}")
    if args.direct or not import_with_cli(units, persons):
        if not args.direct:
            print("seed: `healthbot import` did not work; inserting rows directly")
        asyncio.run(insert_directly(args.users))
    if args.url:
        token = os.environ.get("HEALTHBOT_WECHAT_TOKEN", "")
        if asyncio.run(bind_all(args.url, token, args.users)):
            sys.exit(1)


if __name__ == "__main__":
    main()
