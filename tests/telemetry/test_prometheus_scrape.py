"""A real Prometheus (Debian's, scripts/ensure-prometheus.sh) scrapes the running stack's API
and evaluates our alert rules: forged Cashfree webhooks make `BillingWebhooksRefused` fire.

The rules are deploy/prometheus's own, expressions unchanged; only their `for:` durations are
cut to 0 s and the intervals to 1 s, so the alert fires within seconds instead of minutes."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.harness.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = "/usr/bin/prometheus"
WAIT_S = 90.0

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def prometheus(shared_stack: Stack, tmp_path: Path) -> Iterator[str]:
    assert Path(PROMETHEUS).exists(), "prometheus missing: run scripts/ensure-prometheus.sh"
    rules = yaml.safe_load((ROOT / "deploy/prometheus/rules/billing.yml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "alert" in rule:
                rule["for"] = "0s"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    api = urlsplit(shared_stack.api_url)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yml")],
        "scrape_configs": [
            {
                "job_name": "billing-api",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [api.netloc]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


async def _until(what: str, check: Any, deadline: float) -> Any:
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not within {WAIT_S} s (last: {last!r})")


async def test_forged_webhooks_fire_the_alert(shared_stack: Stack, prometheus: str) -> None:
    deadline = time.monotonic() + WAIT_S
    series = 'billing_webhooks_received_total{outcome="webhook_signature_invalid"}'
    body = json.dumps({"type": "PAYMENT_SUCCESS_WEBHOOK", "data": {}}).encode()

    async def forge() -> None:
        r = await shared_stack.signed_webhook(body, secret="not-our-secret-" + "x" * 20)
        assert r.status_code == 401, r.text

    async with httpx.AsyncClient(base_url=prometheus, timeout=5) as prom:

        async def ready() -> bool:
            return (await prom.get("/-/ready")).status_code == 200

        async def scraped() -> bool:
            r = await prom.get("/api/v1/query", params={"query": series})
            return bool(r.json()["data"]["result"])

        async def firing() -> list[dict[str, Any]]:
            alerts = (await prom.get("/api/v1/alerts")).json()["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "BillingWebhooksRefused" and a["state"] == "firing"
            ]

        await _until("Prometheus ready", ready, deadline)
        # Quiet first: the rule is loaded and nothing fires it yet.
        rules = (await prom.get("/api/v1/rules")).json()["data"]["groups"]
        assert any(r["name"] == "BillingWebhooksRefused" for g in rules for r in g["rules"])
        assert not await firing()
        # One forged webhook makes the series exist; once Prometheus has a sample of it, the
        # next ones are an increase it can see.
        await forge()
        await _until("the refusal series scraped", scraped, deadline)
        for _ in range(15):
            await forge()
        alerts = await _until("BillingWebhooksRefused firing", firing, deadline)
        assert alerts[0]["labels"]["severity"] == "page"
        assert "Cashfree webhooks refused" in alerts[0]["annotations"]["summary"]
