"""The shape of the code, checked: layers point one way, no module reaches into another's
repository, and every route of the composition root has a consumer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from commdesk_billing import wiring
from commdesk_billing.config import Settings
from commdesk_billing.queues import routing
from commdesk_billing.queues.topology import QUEUES

SRC = Path(__file__).resolve().parents[2] / "src" / "commdesk_billing"
INFRASTRUCTURE = ("queues", "security", "db", "gateway", "storage", "telemetry", "idempotency")


def _imports(path: Path) -> list[str]:
    """Every `commdesk_billing…` module a file imports, at any depth (lazy imports too)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
    return [m for m in found if m.startswith("commdesk_billing.")]


def _files(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def test_infrastructure_imports_no_domain() -> None:
    offenders = [
        f"{path.relative_to(SRC)} imports {name}"
        for folder in INFRASTRUCTURE
        for path in _files(SRC / folder)
        for name in _imports(path)
        if name.startswith("commdesk_billing.modules")
    ]
    assert offenders == []


def test_no_module_imports_another_modules_repository() -> None:
    offenders = []
    for path in _files(SRC / "modules"):
        own = path.relative_to(SRC / "modules").parts[0]
        for name in _imports(path):
            parts = name.split(".")
            if (
                len(parts) >= 4
                and parts[1] == "modules"
                and parts[2] != own
                and parts[3] == "repository"
            ):
                offenders.append(f"{path.relative_to(SRC)} imports {name}")
    assert offenders == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    # The scans above must be able to fail: the same parsing finds a lazy import.
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from commdesk_billing.modules.payments import repository\n")
    assert "commdesk_billing.modules.payments.repository" in _imports(sample)


def test_every_route_has_a_handler_and_a_declared_queue() -> None:
    built = wiring.handlers(Settings())
    assert set(built) == set(wiring.ROUTES)
    assert set(wiring.ROUTES.values()) == set(wiring.HANDLER_KINDS), "a handler kind unused"
    assert set(wiring._build_kinds(Settings())) == set(wiring.HANDLER_KINDS)
    # Kinds that wrap another share its instance (one Cashfree client per processor).
    assert (
        built[("payment.processing", "payment.webhook")].processing
        is built[  # type: ignore[union-attr]
            ("payment.processing", "payment.sync")
        ]
    )
    assert set(wiring.BATCH_ROUTES) <= set(wiring.ROUTES), "a batch route needs a single one"
    assert set(wiring.TABLE.queues()) <= set(QUEUES)
    per_queue = routing.per_queue(built)
    assert set(per_queue) == set(wiring.TABLE.queues())


def _sends_and_announces() -> tuple[list[tuple[str, str, str]], list[tuple[str, str]]]:
    """(file, queue, type) of every `outbox.send` and (file, type) of every
    `outbox.announce` in the source; their arguments must be literals to be checked."""
    sends: list[tuple[str, str, str]] = []
    announces: list[tuple[str, str]] = []
    for path in _files(SRC):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            target = node.func
            if not (isinstance(target.value, ast.Name) and target.value.id == "outbox"):
                continue
            where = str(path.relative_to(SRC))
            args = node.args
            if target.attr == "send":
                assert isinstance(args[1], ast.Constant), f"{where}: queue must be a literal"
                kind = args[2].value if isinstance(args[2], ast.Constant) else None
                sends.append((where, str(args[1].value), str(kind)))
            elif target.attr == "announce":
                assert isinstance(args[1], ast.Constant), f"{where}: type must be a literal"
                announces.append((where, str(args[1].value)))
            elif target.attr == "publish":
                pytest.fail(f"{where}: domain code sends or announces, never publishes")
    return sends, announces


def test_every_command_sent_is_routed_and_every_event_reaches_only_consumers() -> None:
    sends, announces = _sends_and_announces()
    assert sends and announces
    for where, queue, kind in sends:
        if kind == "None":  # a type chosen at run time: every type of that queue is routed
            assert wiring.TABLE.types(queue), f"{where}: {queue} has no consumer"
        else:
            assert wiring.TABLE.routed(queue, kind), f"{where}: {queue}/{kind} not routed"
    for where, kind in announces:
        for queue in wiring.TABLE.destinations(kind):
            assert (queue, kind) in wiring.ROUTES, where
    # The events of today reach the tax documents, the notifications and their other
    # consumers, and nothing unread.
    assert wiring.fanout()["payment.credited"] == (
        "analytics.billing",
        "fraud.detection",
        "invoice.generate",
        "notifications.billing",
        "payment.processing",
        "wallet.credit",
        "webhooks.outbound",
    )
    assert wiring.fanout()["refund.succeeded"] == (
        "analytics.billing",
        "invoice.generate",
        "notifications.billing",
        "webhooks.outbound",
    )


def test_an_unrouted_command_is_refused_before_anything_is_written() -> None:
    import asyncio

    from commdesk_billing.queues import outbox

    class NoConnection:
        async def execute(self, *_: object, **__: object) -> None:
            raise AssertionError("nothing may be written for an unrouted command")

    with pytest.raises(RuntimeError, match="consumes no"):
        asyncio.run(
            outbox.send(NoConnection(), "webhook.processing", "payment.credited", {})  # type: ignore[arg-type]
        )


def module_graph() -> dict[str, set[str]]:
    """Which module imports which other module, at any depth."""
    graph: dict[str, set[str]] = {}
    for path in _files(SRC / "modules"):
        own = path.relative_to(SRC / "modules").parts[0]
        for name in _imports(path):
            parts = name.split(".")
            if len(parts) >= 3 and parts[1] == "modules" and parts[2] != own:
                graph.setdefault(own, set()).add(parts[2])
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            if (found := visit(nxt, [*path, node])) is not None:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        if (found := visit(start, [])) is not None:
            return found
    return None


def test_modules_depend_on_each_other_one_way() -> None:
    # A cycle (payments → webhooks → payments) means neither can change alone.
    assert _cycle(module_graph()) is None
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
