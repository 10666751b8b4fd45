#!/usr/bin/env bash
# Quick start, step 2: the whole check — lint, types, and the test suite against real
# PostgreSQL (each run makes its own database and drops it afterwards).
#
#   bash scripts/test.sh                 everything, as CI runs it
#   bash scripts/test.sh --quick [ARGS]  the development loop: the same checks, but the tests
#                                        marked `slow` are left out (-m "not slow")
# Any other arguments go to pytest (e.g. tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
if [ "${1:-}" = "--quick" ]; then
  quick=1
  shift
fi
bash scripts/ensure-services.sh
if [ "$quick" -eq 0 ]; then
  bash scripts/ensure-browser.sh   # Debian's chromium, for the browser tests (hosted checkout, console)
  bash scripts/ensure-prometheus.sh  # promtool and Prometheus, for the alert rules and the one scrape test
fi
bash scripts/bootstrap.sh
bash scripts/ensure-linters.sh     # hadolint, actionlint, yamllint, ShellCheck: tests/deploy
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
if [ "$quick" -eq 1 ]; then
  .venv/bin/pytest -m "not slow" "$@"
elif [ "$#" -eq 0 ]; then
  # The whole suite, in BILLING_TEST_WORKERS processes (pytest-xdist; each its own database,
  # broker vhost, MongoDB and Redis prefix; a file's tests stay in one process, so its
  # module fixtures start once). The fault tests' records become docs/reliability.md's table.
  # (`tests` named, so its conftest, which defines the option, is loaded before parsing)
  # --no-loadscope-reorder: files go out in collection order, which puts the longest first
  # (tests/conftest.py), instead of the files with the most tests first.
  .venv/bin/pytest tests -n "${BILLING_TEST_WORKERS:-3}" --dist loadfile --no-loadscope-reorder \
    --reliability-report docs/reliability.md
else
  .venv/bin/pytest "$@"
fi
