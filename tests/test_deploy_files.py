"""The deployment files hold what docs/deploy.md promises (no Docker engine needed to check).

docker-compose.yml: two `serve` workers, one scheduler, Redis, PostgreSQL, the proxy, the
migration before the workers, health checks. Dockerfile: multi-stage, non-root, catalogs
compiled, health check. Every setting documented; every test docs/security.md cites exists.
"""

from __future__ import annotations

import fnmatch
import io
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from babel.messages.mofile import write_mo
from babel.support import Translations

from bot.i18n import read_catalog
from bot.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NGINX = ROOT / "deploy" / "nginx.conf"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
SECURITY_DOC = ROOT / "docs" / "security.md"
ENV_EXAMPLE = ROOT / "deploy" / "healthbot.env.example"
PACKAGES = ("bot", "campus", "handlers", "storage", "scheduler", "simulator", "locales")
SERVE_WORKER = ["healthbot", "serve", "--host", "0.0.0.0", "--port", "8080", "--no-scheduler"]


# --- docker-compose.yml ---------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def by_command(services: dict[str, Any], *words: str) -> dict[str, dict[str, Any]]:
    wanted = ["healthbot", *words]
    return {name: s for name, s in services.items() if command(s)[: len(wanted)] == wanted}


def image_of(service: dict[str, Any]) -> str:
    return str(service.get("image", ""))


def test_compose_runs_two_workers_one_scheduler_and_a_migration() -> None:
    services = compose()["services"]
    workers = by_command(services, "serve")
    assert len(workers) == 2, sorted(workers)
    for name, worker in workers.items():
        assert command(worker) == SERVE_WORKER, name
    schedulers = by_command(services, "scheduler")
    assert len(schedulers) == 1, sorted(schedulers)
    migrations = by_command(services, "db", "upgrade")
    assert len(migrations) == 1
    (migrate,) = migrations
    assert services[migrate].get("restart") == "no"
    for name, s in {**workers, **schedulers}.items():
        depends = s.get("depends_on", {})
        assert depends.get(migrate, {}).get("condition") == "service_completed_successfully", name
        for needed in ("postgres", "redis"):
            assert depends.get(needed, {}).get("condition") == "service_healthy", (name, needed)
    # Every bot process runs the same image with the same settings.
    bots = {**workers, **schedulers, migrate: services[migrate]}
    assert len({image_of(s) for s in bots.values()}) == 1
    assert all(s.get("env_file") == "deploy/healthbot.env" for s in bots.values())


def test_compose_has_postgres_redis_and_the_proxy_with_health_checks() -> None:
    doc = compose()
    services = doc["services"]
    assert image_of(services["postgres"]).startswith("postgres:")
    assert any(
        str(v).endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"]
    )
    assert image_of(services["redis"]).startswith("redis:")
    assert image_of(services["proxy"]).startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    for name in ("postgres", "redis", "proxy"):
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    for name in by_command(services, "serve"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert "http://127.0.0.1:8080/healthz" in test, name
    # Only the proxy is reachable from outside; the data stores have no route out.
    published = sorted(name for name, s in services.items() if s.get("ports"))
    assert published == ["proxy"]
    assert doc["networks"]["backend"].get("internal") is True
    for name in ("postgres", "redis"):
        assert services[name]["networks"] == ["backend"], name


def test_compose_bot_containers_are_locked_down() -> None:
    services = compose()["services"]
    bots = {**by_command(services, "serve"), **by_command(services, "scheduler")}
    for name, s in bots.items():
        assert s.get("read_only") is True, name
        assert s.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in s.get("security_opt", []), name
        assert "user" not in s, f"{name} must keep the image's non-root user"


def test_compose_lets_workers_finish_late_answers_when_stopped() -> None:
    # A late answer goes on after WeChat got `success` (deadline 4.5 s, lock wait up to 5 s
    # more); a stop must leave time for it and its push, beyond Docker's default 10 s.
    for name, s in by_command(compose()["services"], "serve").items():
        grace = str(s.get("stop_grace_period", "10s"))
        assert grace.endswith("s") and int(grace[:-1]) >= 20, name


def test_the_example_settings_are_real_settings_for_several_processes() -> None:
    names = set(re.findall(r"^#?\s*(HEALTHBOT_[A-Z_]+)=", ENV_EXAMPLE.read_text(), re.M))
    known = {f"HEALTHBOT_{field.upper()}" for field in Settings.model_fields}
    assert names and names <= known, names - known
    values = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.startswith("HEALTHBOT_")
    )
    assert values["HEALTHBOT_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert values["HEALTHBOT_REDIS_URL"] == "redis://redis:6379/0"
    # Placeholders only: nothing that would pass for a configured secret.
    for secret in ("WECHAT_TOKEN", "WECHAT_SECRET", "WECHAT_AES_KEY", "DATA_KEY"):
        assert values[f"HEALTHBOT_{secret}"].startswith("<"), secret


# --- deploy/nginx.conf ----------------------------------------------------------------------


def test_the_proxy_spreads_wechat_and_the_link_pages_over_both_workers() -> None:
    conf = NGINX.read_text(encoding="utf-8")
    upstream = re.search(r"upstream healthbot \{(.*?)\}", conf, re.S)
    assert upstream is not None
    workers = sorted(by_command(compose()["services"], "serve"))
    assert re.findall(r"^\s*server (\w+):8080\b", upstream.group(1), re.M) == workers
    assert "ip_hash" not in upstream.group(1) and "hash " not in upstream.group(1)
    for path in ("= /wechat", "= /healthz", "/dashboard", "/trace"):
        block = re.search(rf"location {re.escape(path)} \{{(.*?)\n        \}}", conf, re.S)
        assert block is not None, path
        assert "proxy_pass http://healthbot;" in block.group(1), path
    metrics = re.search(r"location = /metrics \{(.*?)\}", conf, re.S)
    assert metrics is not None and "return 404;" in metrics.group(1)
    assert re.search(r"location / \{\s*return 404;", conf)


def test_the_proxy_logs_no_query_strings() -> None:
    """openids and signatures (/wechat) and link tokens travel in query strings."""
    conf = NGINX.read_text(encoding="utf-8")
    formats = re.findall(r"log_format\s+\w+\s+(.*?);", conf, re.S)
    assert formats
    for fmt in formats:
        for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "$arg_"):
            assert leaky not in fmt, leaky
    for line in re.findall(r"^\s*access_log\s+(.*?);", conf, re.M):
        assert line == "off" or line.split()[-1] in re.findall(r"log_format\s+(\w+)", conf)


# --- Dockerfile -----------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for op, rest in instructions():
        if op == "FROM":
            found.append([])
        if found:
            found[-1].append((op, rest))
    return found


def test_the_image_is_multi_stage_on_python_slim() -> None:
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1] for op, rest in instructions() if op == "ARG"
    }
    built = stages()
    assert len(built) >= 2
    for stage in built:
        base = stage[0][1].split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
        assert base == "python:3.11-slim"
    runtime = built[-1]
    copies = [rest for op, rest in runtime if op == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies), (
        "runtime copies build output only"
    )
    builder_runs = " ".join(rest for op, rest in built[0] if op == "RUN")
    assert "pip install ." in builder_runs
    assert all("pip install" not in rest for op, rest in runtime if op == "RUN")


def test_the_image_runs_as_a_user_and_checks_its_health() -> None:
    runtime = stages()[-1]
    users = [rest for op, rest in runtime if op == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    checks = [rest for op, rest in runtime if op == "HEALTHCHECK"]
    assert len(checks) == 1 and "http://127.0.0.1:8080/healthz" in checks[0]
    cmd = [rest for op, rest in runtime if op == "CMD"]
    assert cmd[-1] == '["healthbot", "serve", "--host", "0.0.0.0", "--port", "8080"]'


def compile_snippet() -> str:
    """The Python the builder runs to compile the catalogs."""
    for op, rest in stages()[0]:
        if op == "RUN" and "write_mo" in rest:
            match = re.search(r'python -I -c "(.*?)"', rest)
            assert match is not None
            return match.group(1)
    raise AssertionError("the builder stage compiles no catalogs")


def test_the_builder_compiles_every_catalog_into_messages_mo(tmp_path: Path) -> None:
    """Run the Dockerfile's own compile step on a copy of the catalogs and read the result."""
    import shutil

    copy = tmp_path / "locales"
    shutil.copytree(ROOT / "locales", copy, ignore=shutil.ignore_patterns("*.mo", "__pycache__"))
    script = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); " + compile_snippet()
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, timeout=120)
    for locale in ("zh_CN", "en"):
        mo = copy / locale / "LC_MESSAGES" / "messages.mo"
        assert mo.stat().st_size > 0, locale
        with mo.open("rb") as fp:
            compiled = Translations(fp, domain="messages")
        merged = read_catalog(locale)  # what a checkout compiles in memory, every .po merged
        expected = io.BytesIO()
        write_mo(expected, merged)
        assert mo.read_bytes() == expected.getvalue(), locale
        translated = [
            (m.id, m.string) for m in merged if isinstance(m.id, str) and m.id and m.string
        ]
        assert translated
        for msgid, msgstr in translated:
            assert compiled.gettext(msgid) == msgstr


def test_the_build_context_leaves_out_secrets_and_tests() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in ("**/.env", "deploy", "tests", ".git", ".venv", "*.db"):
        assert entry in ignored, entry


def test_every_runtime_file_is_in_the_package_data() -> None:
    """`pip install .` (the image) ships only what pyproject.toml lists beside the modules."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data: dict[str, list[str]] = config["package-data"]
    not_needed = ("*.mmd", "messages.pot", "*.mo")  # diagrams, the extraction template, builds
    missing = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if any(fnmatch.fnmatch(path.name, p) for p in not_needed):
                continue
            if path.suffix == ".py" and (path.parent / "__init__.py").exists():
                continue  # a module of a package: installed as code
            relative = path.relative_to(ROOT / package).as_posix()
            patterns = package_data.get(package, [])
            if not any(fnmatch.fnmatch(relative, p) for p in patterns):
                missing.append(f"{package}/{relative}")
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"


# --- docs -----------------------------------------------------------------------------------


def test_every_setting_is_documented_in_deploy_md() -> None:
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    settings = {f"HEALTHBOT_{name.upper()}" for name in Settings.model_fields}
    read_elsewhere = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            read_elsewhere |= set(
                re.findall(r"environ(?:\.get)?\(\s*[\"'](HEALTHBOT_[A-Z_]+)", path.read_text())
            )
    documented = set(re.findall(r"`(HEALTHBOT_[A-Z_]+)`", doc))
    missing = sorted((settings | read_elsewhere) - documented)
    assert not missing, f"docs/deploy.md does not document {missing}"


CITATION = re.compile(r"`?(tests/[\w/]+\.py)::([\w:]+)(\[[^\]`]*\])?`?")


def test_every_test_cited_by_the_security_review_exists() -> None:
    doc = SECURITY_DOC.read_text(encoding="utf-8")
    cited = CITATION.findall(doc)
    assert len(cited) >= 20, "the security review should point to the tests that prove it"
    missing = []
    for path, name, _ in cited:
        file = ROOT / path
        if not file.exists():
            missing.append(f"{path} (no such file)")
            continue
        source = file.read_text(encoding="utf-8")
        *classes, function = name.split("::")
        for cls in classes:
            if not re.search(rf"^class {cls}\b", source, re.M):
                missing.append(f"{path}::{name} (no class {cls})")
        if not re.search(rf"^\s*(async )?def {function}\(", source, re.M):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md cites tests that do not exist: {missing}"


@pytest.mark.parametrize("doc", [DEPLOY_DOC, SECURITY_DOC], ids=lambda p: p.name)
def test_the_docs_name_only_commands_that_exist(doc: Path) -> None:
    from click.testing import CliRunner

    from bot.cli import main

    text = doc.read_text(encoding="utf-8")
    runner = CliRunner()
    seen = set()
    for match in re.finditer(r"`healthbot ((?:[a-z]+ ?){1,2})", text):
        words = match.group(1).split()
        if tuple(words) in seen:
            continue
        seen.add(tuple(words))
        result = runner.invoke(main, [*words, "--help"])
        if result.exit_code != 0 and len(words) > 1:  # the second word was an argument
            result = runner.invoke(main, [words[0], "--help"])
        assert result.exit_code == 0, f"{doc.name}: healthbot {' '.join(words)}: {result.output}"
