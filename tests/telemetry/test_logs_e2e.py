"""The demo's whole path (sandbox, API, worker, scheduler as processes: a purchase, a
refund, a payout to a verified bank account, recurring charges) with every process logging
at DEBUG: every log line is JSON labelled for Loki, and not one of the secrets the stack was
configured with, the tokens it issued, or the account numbers it handled appears in any of
them."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.demo_payouts import ACCOUNT
from commdesk_billing.queues.topology import Names, delete
from tests.harness.otlp import Collector, otlp_collector

pytestmark = pytest.mark.slow


@pytest.fixture
def hook_sink() -> Iterator[str]:
    """Where the stack's signed notification webhooks go (BILLING_NOTIFY_WEBHOOK_URL)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as c:
        yield c


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


async def test_the_demo_logs_labelled_json_and_no_secret(
    scratch_database_url: str,
    rabbitmq_url: str,
    tmp_path: Path,
    hook_sink: str,
    collector: Collector,
) -> None:
    prefix = f"logs{uuid.uuid4().hex[:8]}."
    # (No BILLING_METRICS_TOKEN: the demo reads /metrics as a development stack serves it.)
    secrets_used = {
        "BILLING_CASHFREE_CLIENT_SECRET": f"cfsk_{secrets.token_hex(20)}",
        "BILLING_CASHFREE_PAYOUT_CLIENT_SECRET": f"cfpo_{secrets.token_hex(20)}",
        "BILLING_JWT_SECRET": secrets.token_urlsafe(40),
        "BILLING_NOTIFY_WEBHOOK_SECRET": secrets.token_urlsafe(40),
        "BILLING_CSRF_SECRET": secrets.token_urlsafe(40),
        "BILLING_PAYOUT_FINGERPRINT_KEY": _key(),
    }
    sealing_key = _key()
    env = {
        **os.environ,
        **secrets_used,
        "BILLING_DATABASE_URL": scratch_database_url,
        "BILLING_RABBITMQ_URL": rabbitmq_url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": prefix,
        "BILLING_PAYOUT_ACCOUNT_KEYS": json.dumps({"k1": sealing_key}),
        "BILLING_PAYOUT_ACCOUNT_KEY_ID": "k1",
        "BILLING_NOTIFY_WEBHOOK_URL": hook_sink,
        "BILLING_OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "BILLING_LOG_LEVEL": "DEBUG",
        "BILLING_LOG_JSON": "true",
        "BILLING_ENV": "test",
    }
    try:
        # In a directory of its own: the stack writes its signing key (var/dev-jwt-key.pem),
        # mail and documents under var/ there.
        demo = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "commdesk_billing.cli", "demo"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await delete(await connection.channel(), Names(prefix, len(Settings().retry_delays_s)))
    assert demo.returncode == 0, _why_it_failed(demo.stdout, demo.stderr)
    assert "demo: OK" in demo.stdout

    # Every log line is one JSON object with the labels Loki indexes.
    records = []
    for line in demo.stderr.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    services = Counter(r["service"] for r in records)
    assert {"api", "worker", "scheduler"} <= set(services), services
    assert all(r["env"] == "test" and r["level"] and r["event"] for r in records)
    # Inside requests and messages, lines name their trace; the traces are the ones exported.
    traced = [r for r in records if "trace_id" in r]
    assert {r["service"] for r in traced} >= {"api", "worker"}, Counter(
        r["service"] for r in traced
    )
    exported = {s.trace_id for s in collector.snapshot()}
    assert exported and {r["trace_id"] for r in traced} & exported

    # Nothing secret anywhere in what the processes wrote (logs and the demo's own output).
    written = demo.stderr + demo.stdout
    pem = (tmp_path / "var" / "dev-jwt-key.pem").read_text()
    key_lines = [ln for ln in pem.splitlines() if ln and not ln.startswith("-----")]
    assert len(key_lines) > 10
    leaks = [
        name
        for name, value in [
            *secrets_used.items(),
            ("sealing key", sealing_key),
            *((f"signing key line {i}", ln) for i, ln in enumerate(key_lines)),
            ("bank account", ACCOUNT),
        ]
        if value in written
    ]
    assert leaks == []
    # No token the stack issued or accepted: every JWT starts so.
    assert "eyJ" not in written
    print(f"{len(records)} log lines: {dict(services)}; {len(traced)} with a trace id")


def _why_it_failed(stdout: str, stderr: str) -> str:
    """The demo's own lines and the warnings and errors of its log: at DEBUG the log's tail is
    all connection chatter, which hid the reason a run failed."""
    narrative = [line for line in stdout.splitlines() if not line.startswith("{")]
    loud = [
        line
        for line in (stdout + "\n" + stderr).splitlines()
        if line.startswith("{") and '"level": "debug"' not in line and '"level": "info"' not in line
    ]
    return "\n".join([*narrative[-40:], "-- warnings and errors --", *loud[-40:]])
