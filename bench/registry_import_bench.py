"""Import 100,000 generated persons (valid IDs): time and peak memory, first import and re-import.

    python bench/registry_import_bench.py                       # SQLite in a temp dir
    python bench/registry_import_bench.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/hb_bench_registry

Each import runs in a child process so that its peak RSS (ru_maxrss) is its own. A PostgreSQL
database named in the URL is created when missing and emptied first.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATEGORIES = ["student", "faculty", "staff", "family", "contractor", "vendor", "resident"]


def generate(folder: Path, n: int) -> None:
    from campus.identity import resident_id_check_digit

    def write(name: str, header: list[str], rows: list[tuple[str, ...]]) -> None:
        with (folder / name).open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)

    units = [("UNI", "University", "", "")] + [
        (f"U{i:03d}", f"Unit {i}", "UNI", f"P{i:07d}") for i in range(200)
    ]
    places = [("MAIN", "Main", "campus", "", "")]
    places += [(f"G{g:02d}", f"Grid {g}", "grid", "MAIN", "") for g in range(50)]
    places += [(f"H{h:05d}", f"House {h}", "house", f"G{h % 50:02d}", "") for h in range(10_000)]
    persons = []
    for i in range(n):
        first17 = f"420101{19800101 + i // 1000:08d}{i % 1000:03d}"
        category = CATEGORIES[i % len(CATEGORIES)]
        temporary = category in ("family", "contractor", "vendor", "resident")
        persons.append(
            (
                f"P{i:07d}",
                f"姓名{i}",
                category,
                f"U{i % 200:03d}",
                first17 + resident_id_check_digit(first17),
                f"139{i:08d}",
                "guard" if i % 97 == 0 else "",
                f"P{(i + 1) % n:07d}" if temporary else "",
                f"H{i % 10_000:05d}" if i % 3 == 0 else "",
                "en" if i % 11 == 0 else "",
            )
        )
    write("units.csv", ["code", "name", "parent_code", "responsible_nos"], units)
    write("places.csv", ["code", "name", "kind", "parent_code", "policy"], places)
    header = "person_no,name,category,unit_code,id_number,phone,roles,responsible_no,"
    write("persons.csv", (header + "home_place_code,locale").split(","), persons)


def child(url: str, kind: str, path: str) -> None:
    """One import in this process; prints JSON with the time and the peak RSS."""
    import resource

    from bot.settings import Settings
    from campus.registry.importer import run_import

    settings = Settings(_env_file=None, database_url=url, data_key="bench-key")  # type: ignore[call-arg]
    started = time.perf_counter()
    report = asyncio.run(run_import(settings, kind, Path(path), dry_run=False))
    print(
        json.dumps(
            {
                "seconds": round(time.perf_counter() - started, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                "summary": report.summary(),
                "errors": report.errors[:3],
            }
        )
    )


def run_child(url: str, kind: str, path: Path) -> dict[str, object]:
    out = (
        subprocess.run(
            [sys.executable, __file__, "--child", url, kind, str(path)],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return json.loads(out)  # type: ignore[no-any-return]


def reset_postgres(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    admin = url.replace("+asyncpg", "").rsplit("/", 1)[0] + "/postgres"

    async def run() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())
    from storage.engine import create_engine
    from storage.migrate import upgrade

    async def migrate() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--persons", type=int, default=100_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hb-registry-") as tmp:
        folder = Path(tmp)
        url = args.database_url or f"sqlite+aiosqlite:///{folder / 'bench.db'}"
        if url.startswith("postgresql"):
            reset_postgres(url)
        generate(folder, args.persons)
        results = {"persons": args.persons, "database": url.split(":", 1)[0]}
        for kind in ("units", "places"):
            results[kind] = run_child(url, kind, folder / f"{kind}.csv")
        results["first_import"] = run_child(url, "persons", folder / "persons.csv")
        results["re_import"] = run_child(url, "persons", folder / "persons.csv")
        print(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
