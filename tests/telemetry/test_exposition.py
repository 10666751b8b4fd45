"""The API's several uvicorn workers answer /metrics with every worker's figures summed
(prometheus_client's multi-process mode, telemetry/exposition.py): real processes writing
to a shared directory, read as a scrape would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from commdesk_billing.telemetry import exposition

# A worker: counts `n` answers and says whether it counts rate limits locally, then waits
# for a line on stdin (alive) or exits at once.
_WORKER = """
import sys
from commdesk_billing.telemetry.metrics import HTTP_REQUESTS, RATE_LIMIT_LOCAL
HTTP_REQUESTS.labels("GET", "/v1/wallets/me", "200").inc(int(sys.argv[1]))
RATE_LIMIT_LOCAL.set(int(sys.argv[2]))
print("ready", flush=True)
if sys.argv[3] == "stay":
    sys.stdin.readline()
"""


def _start(directory: Path, n: int, local: int, stay: bool) -> subprocess.Popen[str]:
    env = {**os.environ, exposition.ENV: str(directory)}
    process = subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(n), str(local), "stay" if stay else "go"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def _sample(text: str, prefix: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_workers_figures_are_summed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staying = _start(tmp_path, 2, 1, stay=True)  # Redis away for this one
    try:
        _start(tmp_path, 3, 0, stay=False).wait(timeout=30)
        monkeypatch.setenv(exposition.ENV, str(tmp_path))
        text = exposition.payload().decode()
        answered = 'billing_http_requests_total{method="GET",route="/v1/wallets/me",status="200"}'
        assert _sample(text, answered) == 5.0
        assert _sample(text, "billing_rate_limit_local ") == 1.0
    finally:
        assert staying.stdin is not None
        staying.stdin.write("\n")
        staying.stdin.close()
        staying.wait(timeout=30)
    # The worker that counted locally is gone: its gauge goes with it; counts stay.
    text = exposition.payload().decode()
    assert _sample(text, "billing_rate_limit_local ") in (None, 0.0)
    assert _sample(text, answered) == 5.0


def test_the_shared_directory_is_private_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(exposition.ENV, raising=False)
    with exposition.shared_directory() as directory:
        assert os.environ[exposition.ENV] == directory and Path(directory).is_dir()
    assert exposition.ENV not in os.environ and not Path(directory).exists()


def test_a_given_directory_is_emptied_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "counter_12345.db"
    stale.write_bytes(b"old run")
    monkeypatch.setenv(exposition.ENV, str(tmp_path))
    with exposition.shared_directory() as directory:
        assert directory == str(tmp_path) and not stale.exists()
