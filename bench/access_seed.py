"""Seed the guard-verification benchmark: guards on duty at a gate, and pass codes to scan.

    python bench/access_seed.py --out /tmp/verify [--guards 200] [--persons 1000] \
        [--url http://127.0.0.1:18181/wechat]

Settings come from the same HEALTHBOT_* environment as the server (database, data key,
token, AppID: the codes are signed for that campus). Steps:
1. insert a unit, a campus with a gate BGATE (policy green_only), `--persons` students and
   `--guards` guards (role guard) with the project's models, and bind the guards' openids
   (prefix obguard, as benchlib.openid) directly in the database;
2. issue one pass code per student with the project's PassService (validity `--validity`
   seconds, long enough for the whole run) and write them to OUT/tokens.txt; with Redis
   state (HEALTHBOT_REDIS_URL), each code is put on record there as the bot does when it
   issues one (campus/access/issued.py), unless --unrecorded: then every scan checks the
   code's signature, as for a code whose record is gone;
3. with --url, put every guard on duty by sending `上岗 BGATE` through the callback (duty
   lives in the server's state store), checking each reply.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import date
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B

GUARD_PREFIX = "obguard"
GATE = "BGATE"


def guard_no(i: int) -> str:
    return f"BG{i:06d}"


def student_no(i: int) -> str:
    return f"BS{i:06d}"


async def seed(persons: int, guards: int, validity: int, recorded: bool) -> tuple[list[str], bool]:
    """The codes, and whether they are on record in the server's store."""
    from sqlalchemy import select

    from bot.access import key_ring
    from bot.clock import SystemClock
    from bot.keyspace import Keyspace
    from bot.kv import RedisKV
    from bot.settings import Settings
    from campus.access.issued import IssuedCodes
    from campus.access.passes import Holder, IssuedPass, PassService
    from campus.secrets import DataVault
    from storage.engine import create_engine, session_factory
    from storage.migrate import upgrade
    from storage.models import Person, Place, Unit, WeChatAccount

    settings = Settings()
    engine = create_engine(settings.database_url)
    try:
        await upgrade(engine)
        sessions = session_factory(engine)
        vault = DataVault.from_setting(settings.data_key)
        async with sessions.begin() as session:
            if (await session.execute(select(Place.id).where(Place.code == GATE))).first():
                raise SystemExit("access_seed: already seeded (use a fresh database)")
            unit = Unit(code="BENCHSEC", name="压测保卫处")
            campus = Place(code="BCAMPUS", name="压测校园", kind="campus", policy="green_only")
            session.add_all([unit, campus])
            await session.flush()
            session.add(
                Place(
                    code=GATE,
                    name="压测北门",
                    kind="gate",
                    policy="green_only",
                    parent_id=campus.id,
                )
            )
            people = []
            for i in range(persons + guards):
                rid = B.resident_id(100_000 + i)
                is_guard = i >= persons
                people.append(
                    Person(
                        person_no=guard_no(i - persons) if is_guard else student_no(i),
                        name=f"压测{i:05d}",
                        category="staff" if is_guard else "student",
                        unit_id=unit.id,
                        roles="guard" if is_guard else "",
                        id_hash=vault.lookup_hash(rid, "id"),
                        id_cipher=vault.encrypt(rid),
                        locale="zh_CN",
                    )
                )
            session.add_all(people)
            await session.flush()
            for g, person in enumerate(people[persons:]):
                session.add(WeChatAccount(openid=B.openid(GUARD_PREFIX, g), person_id=person.id))
            ids = [p.id for p in people[:persons]]
        clock = SystemClock()
        store = RedisKV.from_url(settings.redis_url) if recorded and settings.redis_url else None
        ring = key_ring(settings, sessions, vault, clock)
        issued_codes = IssuedCodes(store, Keyspace(settings.wechat_appid), ring) if store else None
        passes = PassService(
            sessions,
            ring,
            clock,
            validity=validity,
            issued=issued_codes,
        )
        today = date.today()
        lines = []
        try:
            for pid in ids:
                issued = await passes.issue(Holder(pid, "x", "green", "active", None), today)
                assert isinstance(issued, IssuedPass)
                lines.append(issued.token)
        finally:
            if store is not None:
                await store.close()
        return lines, store is not None
    finally:
        await engine.dispose()


async def on_duty(url: str, token: str, guards: int) -> int:
    now = int(time.time())
    params = B.signed_query(token, now, "888001")
    base = 8_000_000_000_000_000 + (now % 100_000) * 100_000
    failures = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for g in range(guards):
            body = B.text_body(B.openid(GUARD_PREFIX, g), f"上岗 {GATE}", base + g, now)
            async with http.post(url, params=params, data=body) as resp:
                text = await resp.text()
            if resp.status != 200 or "上岗" not in text:
                failures += 1
                if failures <= 3:
                    print(
                        f"access_seed: guard {g}: HTTP {resp.status}: {text[:200]}", file=sys.stderr
                    )
    return failures


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--persons", type=int, default=1000)
    p.add_argument("--guards", type=int, default=200)
    p.add_argument("--validity", type=int, default=3600)
    p.add_argument("--url", default=None)
    p.add_argument("--no-seed", action="store_true", help="only put the guards on duty")
    p.add_argument(
        "--unrecorded",
        action="store_true",
        help="do not put the codes on record: every scan checks a signature",
    )
    args = p.parse_args()
    if not args.no_seed:
        tokens, recorded = asyncio.run(
            seed(args.persons, args.guards, args.validity, not args.unrecorded)
        )
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "tokens.txt").write_text("\n".join(tokens) + "\n")
        where = "on record in Redis" if recorded else "not on record (signatures checked)"
        print(
            f"access_seed: {len(tokens)} pass codes in {args.out / 'tokens.txt'}, {where}, "
            f"{args.guards} guards"
        )
    if args.url:
        failed = asyncio.run(
            on_duty(args.url, os.environ.get("HEALTHBOT_WECHAT_TOKEN", ""), args.guards)
        )
        print(f"access_seed: {args.guards - failed}/{args.guards} guards on duty at {GATE}")
        if failed:
            sys.exit(1)


if __name__ == "__main__":
    main()
