"""deploy/compose.yaml, read as compose would: the services the issue lists, health and
start order, secrets only from files, pinned images, and Traefik's routes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from commdesk_billing.security.ratelimit.routes import TABLE, RouteClass
from tests.deploy.files import COMPOSE, ROOT, image_pinned, load_yaml, run

SERVICES = {
    "traefik", "api", "worker", "scheduler", "migrate", "postgres", "pgbouncer",
    "rabbitmq", "redis", "mongodb", "prometheus", "grafana", "loki",
}  # fmt: skip
ONE_SHOTS = {"migrate"}
# Long-running services without a healthcheck, and why (nothing may wait for them healthy).
NO_HEALTHCHECK = {"loki": "its image has no shell, wget or curl to probe with"}
# Made by the observability part of the issue: compose names them, that part ships them.
PROVIDED_ELSEWHERE = {
    "./deploy/prometheus/prometheus.yml",
    "./deploy/prometheus/rules/",
    "./deploy/grafana/provisioning/",
    "./deploy/grafana/dashboards/",
}
# Cashfree's production webhook source addresses (cashfree.md §5.7).
CASHFREE_PRODUCTION_IPS = {"52.66.101.190", "3.109.102.144", "18.60.134.245", "18.60.183.142"}
SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|COOKIE", re.I)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = load_yaml(COMPOSE)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not check.get("disable", False)


def _labels(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("labels") or []
    pairs = raw.items() if isinstance(raw, dict) else (item.split("=", 1) for item in raw)
    return {key.strip(): str(value).strip() for key, value in pairs}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _webhook_paths() -> set[str]:
    return {path for (_, path), cls in TABLE.items() if cls is RouteClass.webhooks}


def test_every_listed_service_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES


def test_health_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ONE_SHOTS:
            assert service.get("restart") == "no", name
            assert service["healthcheck"] == {"disable": True}, name
        elif name not in NO_HEALTHCHECK:
            assert _has_healthcheck(service), f"{name} has no healthcheck"
        depends = service.get("depends_on") or {}
        # The long form only: a bare list waits for nothing but the container's start.
        assert isinstance(depends, dict), name
        for target, how in depends.items():
            assert target in services, (name, target)
            condition = how["condition"]
            if target in ONE_SHOTS:
                assert condition == "service_completed_successfully", (name, target)
            elif target in NO_HEALTHCHECK:
                assert condition == "service_started", (name, target)
            else:
                assert condition == "service_healthy", (name, target)
                assert _has_healthcheck(services[target]), (name, target)
    # What the processes need is up (and migrated) before they start.
    for process in ("api", "worker", "scheduler"):
        needs = set(services[process]["depends_on"])
        assert {"migrate", "pgbouncer", "rabbitmq", "redis", "mongodb"} <= needs, process
    assert set(services["migrate"]["depends_on"]) == {"postgres"}
    assert set(services["pgbouncer"]["depends_on"]) == {"postgres"}


def test_app_processes_probe_healthz(services: dict[str, dict[str, Any]]) -> None:
    for process, port in (("api", "8000"), ("worker", "9100"), ("scheduler", "9100")):
        service = services[process]
        probe = " ".join(service["healthcheck"]["test"])
        assert "/healthz" in probe and "HEALTHCHECK_PORT" in probe, process
        env = _environment(service)
        assert env["HEALTHCHECK_PORT"] == port, process
        if process != "api":
            assert env["BILLING_WORKER_METRICS_PORT"] == port, process


def test_pgbouncer_pools_by_transaction_and_the_app_knows(
    services: dict[str, dict[str, Any]],
) -> None:
    assert _environment(services["pgbouncer"])["POOL_MODE"] == "transaction"
    for process in ("api", "worker", "scheduler", "migrate"):
        assert _environment(services[process])["BILLING_DB_POOLER"] == "transaction", process


def _literal(value: str) -> bool:
    """A value written into the file rather than taken from the environment or a file."""
    return bool(value) and not re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value)


def test_no_literal_secrets(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    # No URL with a password in it, anywhere (labels, commands, comments included).
    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text)
    for name, service in services.items():
        for key, value in _environment(service).items():
            if not SECRET_NAME.search(key):
                continue
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), (name, key)
            else:
                assert not _literal(value), f"{name}: {key} is written in the file"
        for env_file in service.get("env_file") or []:
            path = env_file["path"] if isinstance(env_file, dict) else env_file
            assert path.startswith("./deploy/secrets/"), (name, path)
    for secret in compose["secrets"].values():
        assert secret["file"].startswith("./deploy/secrets/")


def test_secret_files_are_never_committed() -> None:
    for made_on_the_host in ("billing.env", "pgbouncer.env", "postgres_password", "redis.conf"):
        path = f"deploy/secrets/{made_on_the_host}"
        assert run("git", "check-ignore", "-q", path).returncode == 0, path
    for committed in ("README.md", "billing.env.example"):
        path = f"deploy/secrets/{committed}"
        assert run("git", "check-ignore", "-q", path).returncode == 1, path
    assert run("git", "check-ignore", "-q", "deploy/compose.env").returncode == 0


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        if image.startswith("commdesk-billing:"):
            # Ours: the release the operator names; compose refuses to start without one.
            assert re.fullmatch(r"commdesk-billing:\$\{BILLING_VERSION:\?[^}]+\}", image), name
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        else:
            assert image_pinned(image), f"{name}: {image}"


def test_bind_mounts_and_files_exist(services: dict[str, dict[str, Any]]) -> None:
    sources: set[str] = set()
    for service in services.values():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                sources.add(source)
    assert sources >= PROVIDED_ELSEWHERE
    for source in sources - PROVIDED_ELSEWHERE:
        assert (ROOT / source).exists(), source
    assert (ROOT / "deploy" / "Dockerfile").exists()


def _routers(labels: dict[str, str]) -> dict[str, dict[str, str]]:
    routers: dict[str, dict[str, str]] = {}
    for key, value in labels.items():
        match = re.fullmatch(r"traefik\.http\.routers\.([^.]+)\.(.+)", key)
        if match:
            routers.setdefault(match.group(1), {})[match.group(2)] = value
    return routers


def _middleware(labels: dict[str, str], name: str) -> dict[str, str]:
    prefix = f"traefik.http.middlewares.{name}."
    return {k[len(prefix) :]: v for k, v in labels.items() if k.startswith(prefix)}


def _assert_tls(router: dict[str, str]) -> None:
    assert router["tls"] == "true"
    assert router["tls.certresolver"] == "letsencrypt"
    assert router["entrypoints"] == "websecure"


def test_traefik_routes_the_api_with_tls(services: dict[str, dict[str, Any]]) -> None:
    labels = _labels(services["api"])
    assert labels["traefik.enable"] == "true"
    routers = _routers(labels)
    api = [r for r in routers.values() if "PathPrefix(`/v1`)" in r["rule"]]
    assert len(api) == 1
    _assert_tls(api[0])
    # Nothing routes the operational endpoints to the internet.
    for router in routers.values():
        for private in ("/metrics", "/readyz", "/docs", "/openapi.json"):
            assert private not in router["rule"]


def test_traefik_routes_every_cashfree_webhook_through_its_guard(
    services: dict[str, dict[str, Any]],
) -> None:
    labels = _labels(services["api"])
    routers = _routers(labels)
    paths = _webhook_paths()
    assert len(paths) >= 4  # PG, Subscriptions, Payouts, vendor settlements
    hooks = [r for r in routers.values() if "/v1/webhooks/" in r["rule"]]
    assert len(hooks) == 1
    hook = hooks[0]
    _assert_tls(hook)
    in_rule = set(re.findall(r"Path\(`([^`]+)`\)", hook["rule"]))
    assert in_rule == paths
    # Above the /v1 router, or the general route would take them without the guard.
    assert int(hook["priority"]) > 100
    middlewares = hook["middlewares"].split(",")
    allow = [_middleware(labels, m) for m in middlewares]
    source_ranges = [m["ipallowlist.sourcerange"] for m in allow if "ipallowlist.sourcerange" in m]
    assert len(source_ranges) == 1
    default = re.fullmatch(r"\$\{CASHFREE_WEBHOOK_SOURCE_IPS:-([^}]+)\}", source_ranges[0])
    assert default is not None
    assert set(default.group(1).split(",")) == CASHFREE_PRODUCTION_IPS
    body = "buffering.maxRequestBodyBytes"
    limits = [m[body] for m in allow if body in m]
    assert limits and 0 < int(limits[0]) <= 1024 * 1024


def test_traefik_routes_the_console_with_tls(services: dict[str, dict[str, Any]]) -> None:
    routers = _routers(_labels(services["api"]))
    console = [r for r in routers.values() if "PathPrefix(`/console`)" in r["rule"]]
    assert len(console) == 1
    _assert_tls(console[0])


def test_traefik_has_the_letsencrypt_resolver_and_redirects_http(
    services: dict[str, dict[str, Any]],
) -> None:
    command = services["traefik"]["command"]
    assert "--providers.docker.exposedByDefault=false" in command
    assert any(c.startswith("--certificatesResolvers.letsencrypt.acme.") for c in command)
    assert "--entryPoints.web.http.redirections.entryPoint.to=websecure" in command
    socket = [v for v in services["traefik"]["volumes"] if "docker.sock" in v]
    assert socket == ["/var/run/docker.sock:/var/run/docker.sock:ro"]


def test_compose_file_paths_are_relative_to_the_repository_root() -> None:
    # Run with --project-directory . from the root; a path like ../ would mean the file
    # assumed its own directory instead.
    text = COMPOSE.read_text(encoding="utf-8")
    assert "../" not in text
    assert "--project-directory ." in text
    assert Path(ROOT / "deploy" / "compose.env.example").exists()
