#!/usr/bin/env python3
"""Regenerate the finance console's screenshots in docs/console/ (PNG, 1280 px wide).

They are taken by the console's browser tests (tests/console/test_browser.py and
test_browser_finance.py) while they drive the whole stack in headless Chromium: sign-in,
home, a payment search, a payment after a partial refund (with its credit note), fraud
review, settlements, dead letters, the page a member's account gets; reconciliation
findings, a finding explained and resolved, and the analytics page. Needs the test services
(PostgreSQL, RabbitMQ, Redis) and Debian's chromium and chromedriver
(scripts/ensure-browser.sh).

    .venv/bin/python scripts/console-screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "console"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    env = {**os.environ, "CONSOLE_SCREENSHOTS": str(OUT)}
    tests = ["tests/console/test_browser.py", "tests/console/test_browser_finance.py"]
    # A fixed argument list of our own (no shell, nothing from outside).
    argv = [sys.executable, "-m", "pytest", *tests, "-q", "-p", "no:cacheprovider"]
    done = subprocess.run(argv, cwd=ROOT, env=env, check=False)  # noqa: S603
    shots = sorted(p.name for p in OUT.glob("*.png"))
    sys.stdout.write(f"{len(shots)} screenshot(s) in {OUT.relative_to(ROOT)}: {', '.join(shots)}\n")
    if done.returncode == 0 and not shots:
        sys.stderr.write("the test was skipped (no chromium?): nothing taken\n")
        return 1
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
