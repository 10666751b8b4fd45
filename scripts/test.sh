#!/usr/bin/env bash
# Quick start, step 2: the whole check — lint, types, and the test suite against real
# PostgreSQL (each run makes its own database and drops it afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-services.sh
bash scripts/ensure-browser.sh   # Debian's chromium, for the one hosted-checkout browser test
bash scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest "$@"
