"""deploy/prometheus and deploy/grafana, checked: the configuration and the rules load in
Prometheus's own tool, every alert rule's unit tests pass (`promtool test rules`), the
dashboards are well formed, and every metric a panel or a rule reads is one our code
registers (a renamed metric would otherwise leave an empty panel or an alert that can never
fire). promtool comes from Debian's `prometheus` package (scripts/ensure-prometheus.sh)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import commdesk_billing.app
import commdesk_billing.metrics_snapshot
import commdesk_billing.wiring  # noqa: F401  (every module's metrics registered)
from tests.telemetry.promql import exposed_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
PROMTOOL = "/usr/bin/promtool"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# Series that are Prometheus's own, not ours.
PROMETHEUS_OWN = frozenset({"up"})


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert Path(PROMTOOL).exists(), "promtool missing: run scripts/ensure-prometheus.sh"
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_configuration_and_its_rules(tmp_path: Path) -> None:
    # A copy whose bearer-token file exists: promtool checks that every file named is there.
    shutil.copytree(PROMETHEUS, tmp_path / "prometheus")
    config = tmp_path / "prometheus" / "prometheus.yml"
    token = tmp_path / "token"
    token.write_text("x" * 32)
    text = config.read_text()
    assert "/etc/prometheus/secrets/billing-metrics-token" in text
    config.write_text(text.replace("/etc/prometheus/secrets/billing-metrics-token", str(token)))
    done = _promtool("check", "config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "rules found" in done.stdout, done.stdout


def test_every_alert_rule_passes_its_unit_tests() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*_test.yml"))
    assert tests
    done = _promtool("test", "rules", *[str(t) for t in tests], cwd=PROMETHEUS / "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted((PROMETHEUS / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(group["rules"])
    return rules


# The product's alert list (the seed), each with the rule(s) that raise it.
SEED_ALERTS = {
    "failed webhooks": {"BillingWebhooksRefused", "BillingWebhooksFailing"},
    "queue stuck": {"BillingQueueStuck", "BillingQueueBacklog", "BillingQueueNoConsumer"},
    "fraud spikes": {"BillingFraudSpike"},
    "negative balances": {"BillingNegativeBalance"},
    "high refund spikes": {"BillingRefundSpike"},
    "PostgreSQL connection exhaustion": {"BillingPostgresConnectionsExhausted"},
    "Redis outage": {"BillingRedisDown"},
    "RabbitMQ failures": {"BillingRabbitMQDown"},
}


def test_every_alert_of_the_product_has_a_rule_and_a_unit_test() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    tested = set()
    for path in (PROMETHEUS / "tests").glob("*_test.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            tested |= {
                t["alertname"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")
            }
    for seed_alert, names in SEED_ALERTS.items():
        assert names <= alerts, f"{seed_alert}: no rule {sorted(names - alerts)}"
    assert alerts - tested == set(), "alerts no unit test sees firing"
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for name in alerts:
        assert f"`{name}`" in runbook, f"{name} is not explained in docs/runbook.md"


def test_every_rule_reads_metrics_we_register() -> None:
    exposed = exposed_names()
    recorded = {r["record"] for r in _rules() if "record" in r}
    for rule in _rules():
        for name in metric_names(rule["expr"]):
            assert name in exposed | recorded | PROMETHEUS_OWN, (
                f"{rule.get('alert') or rule.get('record')} reads {name}, which nothing exposes"
            )


def test_dashboards_are_well_formed() -> None:
    assert {d.stem for d in DASHBOARDS} >= {
        "billing-payments",
        "billing-economy",
        "billing-queues",
        "billing-reconciliation",
    }
    uids = set()
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        assert board["uid"] and board["title"], path.name
        assert board["uid"] not in uids, f"{path.name}: uid {board['uid']} used twice"
        uids.add(board["uid"])
        panels = board["panels"]
        assert panels, path.name
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for p in panels:
            assert p["title"] and p["type"] in {"timeseries", "stat"}, (path.name, p)
            assert p["datasource"]["uid"] == "billing-prometheus", (path.name, p["title"])
            assert set(p["gridPos"]) == {"x", "y", "w", "h"}
            assert p["gridPos"]["x"] >= 0 and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), (path.name, p["title"])
            assert all(t["expr"].strip() for t in p["targets"]), (path.name, p["title"])


def test_every_panel_reads_metrics_we_register() -> None:
    exposed = exposed_names()
    for path in DASHBOARDS:
        for p in json.loads(path.read_text())["panels"]:
            for target in p["targets"]:
                names = metric_names(target["expr"])
                assert names, (path.name, p["title"], target["expr"])
                missing = names - exposed - PROMETHEUS_OWN
                assert not missing, f"{path.name} / {p['title']}: {sorted(missing)} not exposed"


def test_the_provisioning_names_the_dashboards_datasource() -> None:
    sources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert [d["uid"] for d in sources["datasources"]] == ["billing-prometheus"]
    providers = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "billing.yml").read_text()
    )
    assert providers["providers"][0]["type"] == "file"


def test_the_name_scan_finds_what_it_must() -> None:
    # The scan itself can fail: a name it missed would pass any check above.
    assert metric_names(
        'sum by (le) (rate(a_bucket{x="b_total"}[$__rate_interval])) / on(job) b == 0'
    ) == {"a_bucket", "b"}
    with pytest.raises(AssertionError):
        assert "billing_no_such_metric_total" in exposed_names()
