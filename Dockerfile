# syntax=docker/dockerfile:1
# The Healthy Campus Bot image: `healthbot serve` by default; the same image runs
# `healthbot scheduler`, `healthbot db upgrade` and every other CLI command (docs/deploy.md).
#
#   docker build -t healthbot .
#   docker run --env-file deploy/healthbot.env -p 8080:8080 healthbot

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: a virtual environment with the bot installed and its catalogs compiled ---------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/healthbot/bin:$PATH

RUN python -m venv /opt/healthbot

WORKDIR /src

# The dependencies first, from pyproject.toml alone, so that a change to the code reuses this
# layer. Every dependency ships manylinux wheels for CPython 3.11: no compiler is needed.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# The bot itself, as a regular (non-editable) install into the virtual environment.
COPY bot ./bot
COPY campus ./campus
COPY handlers ./handlers
COPY locales ./locales
COPY scheduler ./scheduler
COPY simulator ./simulator
COPY storage ./storage
RUN pip install . \
    && test -f /opt/healthbot/lib/python3.11/site-packages/campus/rules.yaml \
    && test -f /opt/healthbot/lib/python3.11/site-packages/storage/migrations/env.py

# Compile the catalogs: messages.po and every feature catalog (returns.po, …) merged by
# bot.i18n.read_catalog into one messages.mo per locale, which bot.i18n loads when present.
# `python -I` keeps /src off sys.path, so this compiles the installed package's catalogs.
WORKDIR /
RUN python -I -c "from babel.messages.mofile import write_mo; \
from bot.i18n import LOCALE_DIR, LOCALES, read_catalog; \
[write_mo(fp, read_catalog(loc)) or fp.close() for loc in LOCALES \
 for fp in [open(LOCALE_DIR / loc / 'LC_MESSAGES' / 'messages.mo', 'wb')]]" \
    && python -I -c "from bot.i18n import LOCALE_DIR, LOCALES, load_all; load_all(); \
assert all((LOCALE_DIR / loc / 'LC_MESSAGES' / 'messages.mo').stat().st_size > 0 for loc in LOCALES)" \
    && healthbot --help > /dev/null

# --- runtime: the virtual environment and a CJK font, run as an unprivileged user -------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="healthbot" \
      org.opencontainers.image.description="Healthy Campus Bot: a WeChat Official Account for a university's epidemic-prevention routine" \
      org.opencontainers.image.licenses="MIT"

# A CJK font for the pass-code cards and posters (campus/access/artwork.py finds it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-wqy-zenhei \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 healthbot \
    && useradd --system --uid 10001 --gid healthbot --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin healthbot \
    && mkdir /app \
    && chown healthbot:healthbot /app

COPY --from=builder /opt/healthbot /opt/healthbot

ENV PATH=/opt/healthbot/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# The working folder is the only one the bot may write to (an SQLite trial keeps its file
# here; with PostgreSQL nothing is written and the container may run read-only).
WORKDIR /app
USER 10001:10001

EXPOSE 8080

# /healthz answers 200 only when the database and Redis answer (503 otherwise).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

CMD ["healthbot", "serve", "--host", "0.0.0.0", "--port", "8080"]
