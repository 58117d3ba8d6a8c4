#!/bin/sh
# The callback benchmark in one command; arguments go to run_callback.py (--help).
cd "$(dirname "$0")/.." && exec .venv/bin/python bench/run_callback.py "$@"
