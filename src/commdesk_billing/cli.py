"""`commdesk-billing`: one command for every process and operator task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Mapping
from datetime import timedelta
from typing import Any, TypeVar

import click
from pydantic import ValidationError

from commdesk_billing.cli_errors import (
    EXIT_CONFIG,
    EXIT_FINDINGS,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    Failure,
    PlainErrors,
    translate,
)
from commdesk_billing.cli_output import emit, json_option, table, to_json
from commdesk_billing.config import Settings, get_settings
from commdesk_billing.gateway.sandbox.cli import sandbox as sandbox_command
from commdesk_billing.telemetry.logging import configure as configure_logging

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        raise Failure.of(translate(exc).message, EXIT_CONFIG) from None


def _logs(settings: Settings, service: str = "cli", level: str | None = None) -> None:
    """JSON logs labelled with the process's role and environment (telemetry/logging.py)."""
    configure_logging(
        level or settings.log_level, settings.log_json, service=service, env=settings.env.value
    )


def _run(fn: Callable[[Settings], Coroutine[Any, Any, T]], service: str = "cli") -> T:
    settings = _settings()
    _logs(settings, service)
    return asyncio.run(fn(settings))


@click.group(cls=PlainErrors)
@click.version_option(package_name="commdesk-billing", prog_name="commdesk-billing")
def main() -> None:
    """CommDesk Billing: credits, wallets and the double-entry ledger.

    Exit codes: 0 done; 1 checked and found wrong; 2 bad command line; 3 refused (not found,
    not allowed); 4 a dependency did not answer (nothing changed); 5 bad configuration;
    70 a bug (BILLING_CLI_TRACEBACK=1 shows the traceback)."""


@main.command()
@click.option("--revision", default="head", show_default=True)
@json_option
def migrate(revision: str, as_json: bool) -> None:
    """Apply database migrations (uses BILLING_DATABASE_DIRECT_URL when set)."""
    from commdesk_billing.db.migrate import upgrade

    settings = _settings()
    _logs(settings)
    upgrade(settings.direct_url, revision)
    emit(as_json, {"migrated_to": revision}, f"database migrated to {revision}")


@main.command()
@click.option("--host", default=None, help="Defaults to BILLING_API_HOST.")
@click.option("--port", default=None, type=int, help="Defaults to BILLING_API_PORT.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
def api(host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API (uvicorn, configured by `httpserver.server_config`)."""
    from commdesk_billing import httpserver

    settings = _settings()
    _logs(settings, "api")
    config = httpserver.server_config(
        "commdesk_billing.app:create_served_app",
        settings,
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
    )
    if workers == 1:
        httpserver.run(config)
        return
    from commdesk_billing.telemetry.exposition import shared_directory

    # Several processes behind one port: /metrics sums them all (telemetry/exposition.py).
    with shared_directory():
        httpserver.run(config)


@main.command()
@click.option("--sub", required=True, help="Subject: the CommDesk user or service id.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(
        ["member", "community_owner", "finance_admin", "support", "auditor", "service"]
    ),
)
@click.option("--scope", "scopes", multiple=True, help="Repeatable, e.g. wallets:debit.")
@click.option("--ttl-hours", default=12, show_default=True, type=click.IntRange(1, 24 * 30))
@click.option("--email", default=None)
@json_option
def token(
    sub: str, role: str, scopes: tuple[str, ...], ttl_hours: int, email: str | None, as_json: bool
) -> None:
    """Print a signed development JWT for calling the API (alone on its line, for
    `TOKEN=$(commdesk-billing token ...)`)."""
    from commdesk_billing.config import Environment
    from commdesk_billing.security.jwt import Role, issue_token

    settings = _settings()
    if settings.env is Environment.production:
        raise click.ClickException(
            "tokens are issued by CommDesk's identity service in production, not by this command"
        )
    signed = issue_token(
        settings,
        sub=sub,
        role=Role(role),
        scopes=list(scopes),
        ttl=timedelta(hours=ttl_hours),
        email=email,
    )
    emit(
        as_json,
        {"token": signed, "sub": sub, "role": role, "scopes": list(scopes), "ttl_hours": ttl_hours},
        signed,
    )


@main.group()
def ledger() -> None:
    """Ledger integrity: seal and verify."""


@ledger.command("verify")
@json_option
@click.option(
    "--seal/--no-seal", default=False, help="Seal committed entries first, so the walk covers them."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="A line on stderr per check as it ends (default: when stderr is a terminal).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Re-walk every chain and seal from the first entry, not only what is new since the "
    "last clean run's checkpoint.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Backends the full chain walk shares its statements among, all on the run's one "
    "snapshot (default: BILLING_LEDGER_VERIFY_JOBS, 2). An incremental walk uses one.",
)
def ledger_verify(
    as_json: bool, seal: bool, progress: bool | None, full: bool, jobs: int | None
) -> None:
    """Walk the chains and seals written since the last clean run's checkpoint (`--full`:
    all of them) and check every invariant; exit 1 naming what is off. Prints the checks it
    ran, how long it took and the entries per second of each walk. A clean run moves the
    checkpoint to the last seal block."""
    import time

    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.ledger.seal import seal_pending
    from commdesk_billing.modules.ledger.verify import CheckRun, verify_ledger
    from commdesk_billing.telemetry.metrics import LEDGER_VERIFY_FINDINGS

    show = sys.stderr.isatty() if progress is None else progress
    runs: list[CheckRun] = []
    # A walk's bar is redrawn in place (no newline) until it reaches its total; a walk that
    # ends short of the total it was told (rows can go between the count and the walk) must
    # still not leave the next check's line glued to its bar.
    bar_open = False

    def step(run: CheckRun) -> None:
        nonlocal bar_open
        runs.append(run)
        if show:
            if bar_open:
                click.echo("", err=True)
                bar_open = False
            found = f", {run.findings} finding(s)" if run.findings else ""
            click.echo(
                f"[{run.index}/{run.total}] {run.name} ({run.seconds:.2f} s{found})", err=True
            )

    walk_started: dict[str, float] = {}
    rates: dict[str, float] = {}

    def walk_step(walk: str, done: int, total: int) -> None:
        nonlocal bar_open
        started_at = walk_started.setdefault(walk, time.perf_counter())  # told 0 first
        elapsed = max(time.perf_counter() - started_at, 1e-6)
        rates[walk] = done / elapsed
        if show:
            width = 30
            filled = width * done // total if total else width
            click.echo(
                f"\r{walk:<14} [{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,}"
                f" entries, {rates[walk]:,.0f}/s",
                err=True,
                nl=done >= total,
            )
            bar_open = done < total

    async def go(settings: Settings) -> Any:
        backends = jobs if jobs is not None else settings.ledger_verify_jobs
        # The run's own connection and the walk's helpers, none waiting for another.
        engine = make_engine(settings, direct=True, pool_size=max(2, backends))
        try:
            if seal:
                await seal_pending(engine)
            return await verify_ledger(
                engine,
                progress=step,
                incremental=not full,
                checkpoint=True,
                walk_progress=walk_step,
                jobs=backends,
            )
        finally:
            await engine.dispose()

    started = time.perf_counter()
    report = _run(go)
    duration = time.perf_counter() - started
    # Each walk's rate over its whole check's time (set-up reads included).
    seconds = {r.name: r.seconds for r in runs}
    walks = {
        name: {
            "entries": n,
            "seconds": round(seconds.get(name, 0.0), 3),
            "entries_per_s": round(n / seconds[name]) if seconds.get(name) else 0,
        }
        for name, n in report.walks.items()
    }
    for finding in report.findings:
        LEDGER_VERIFY_FINDINGS.labels(finding.check).inc()
    if as_json:
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "mode": "full" if full else "incremental",
                    "since_entry_id": report.since.through_entry_id,
                    # Backends a full chain walk may share (an incremental one uses one).
                    "jobs": report.jobs,
                    "duration_s": round(duration, 3),
                    "walks": walks,
                    "checks": [
                        {"name": r.name, "seconds": round(r.seconds, 3), "findings": r.findings}
                        for r in runs
                    ],
                    "stats": report.stats,
                    "findings": [f.__dict__ for f in report.findings],
                },
                indent=2,
            )
        )
    else:
        stats = ", ".join(f"{k}={v}" for k, v in report.stats.items())
        for finding in report.findings:
            click.echo(f"FAIL {finding}")
        click.echo(
            ("ledger OK: " if report.ok else f"ledger NOT OK: {len(report.findings)} finding(s); ")
            + stats
        )
        click.echo(f"{len(runs)} checks in {duration:.2f} s: " + ", ".join(r.name for r in runs))
        click.echo(
            ("full walk" if full else f"incremental from entry {report.since.through_entry_id}")
            + "".join(
                f"; {name} {w['entries']:,} entries at {w['entries_per_s']:,}/s"
                for name, w in walks.items()
            )
        )
    sys.exit(0 if report.ok else EXIT_FINDINGS)


@ledger.command("seal")
@click.option("--block-size", default=5000, show_default=True, type=click.IntRange(1, 10**6))
@json_option
def ledger_seal(block_size: int, as_json: bool) -> None:
    """Seal committed entries into hash-chained blocks."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.ledger.seal import SealResult, seal_pending

    async def go(settings: Settings) -> SealResult:
        engine = make_engine(settings, direct=True, pool_size=2)
        try:
            return await seal_pending(engine, block_size=block_size)
        finally:
            await engine.dispose()

    result = _run(go)
    emit(
        as_json,
        {
            "entries": result.entries,
            "blocks": result.blocks,
            "skipped_reason": result.skipped_reason,
        },
        f"sealed {result.entries} entries in {result.blocks} block(s)"
        + (f" ({result.skipped_reason})" if result.skipped_reason else ""),
    )


@main.group()
def wallet() -> None:
    """Wallet operator tasks."""


@wallet.command("sync-balance")
@click.argument("wallet_id", type=click.UUID)
@json_option
def wallet_sync(wallet_id: uuid.UUID, as_json: bool) -> None:
    """Recompute a wallet from the ledger and report drift (never changes anything); exit 1
    when it drifted."""
    from commdesk_billing.db.engine import in_transaction, make_engine
    from commdesk_billing.modules.wallet import service as ws
    from commdesk_billing.modules.wallet.model import BalanceReport

    async def go(settings: Settings) -> BalanceReport:
        engine = make_engine(settings, pool_size=1)
        try:
            return await in_transaction(engine, lambda c: ws.sync_balance(c, wallet_id))
        finally:
            await engine.dispose()

    report = _run(go)
    data = {
        **{k: v for k, v in report.__dict__.items() if k != "wallet_id"},
        "wallet_id": str(report.wallet_id),
        "drift": report.drift,
    }
    rows = [(k, v) for k, v in data.items() if k != "drift"]
    rows += [(f"drift.{k}", v) for k, v in (report.drift or {}).items()]
    emit(as_json, data, table(["field", "value"], rows))
    sys.exit(0 if report.consistent else EXIT_FINDINGS)


@main.group("auto-recharge")
def auto_recharge() -> None:
    """Auto-recharge operator tasks (to pause it for everyone: BILLING_AUTO_RECHARGE_ENABLED)."""


@auto_recharge.command("pause")
@click.argument("wallet_id", type=click.UUID)
@click.option("--reason", required=True, help="Recorded in the wallet's decision log.")
@json_option
def auto_recharge_pause(wallet_id: uuid.UUID, reason: str, as_json: bool) -> None:
    """Turn one wallet's auto-recharge off (its owner may turn it back on)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from commdesk_billing.db.engine import in_transaction, make_engine
    from commdesk_billing.modules.audit import service as audit
    from commdesk_billing.modules.autorecharge import service as auto_recharge_service
    from commdesk_billing.security import origin

    async def work(c: AsyncConnection) -> bool:
        paused = await auto_recharge_service.pause(c, wallet_id, reason=reason)
        if paused:  # audited with the change, in its transaction
            await audit.record(
                c,
                None,
                action="wallet.auto_recharge.paused",
                target_type="wallet",
                target_id=str(wallet_id),
                details={"reason": reason},
                before={"auto_recharge_enabled": True},
                after={"auto_recharge_enabled": False},
            )
        return paused

    async def go(settings: Settings) -> bool:
        engine = make_engine(settings, pool_size=1)
        try:
            with origin.bound(origin.operator(f"auto-recharge pause {wallet_id}")):
                return await in_transaction(engine, work)
        finally:
            await engine.dispose()

    paused = _run(go)
    emit(
        as_json,
        {"wallet_id": str(wallet_id), "paused": paused},
        "paused" if paused else "auto-recharge was not on for this wallet",
    )


@main.group()
def staff() -> None:
    """Finance console accounts (staff sign in at /console)."""


def _staff_action(command: str, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """Run `work(conn)` in one transaction, audited as the operator (`cli:<os user>`)."""
    from commdesk_billing.db.engine import in_transaction, make_engine
    from commdesk_billing.security import origin

    async def go(settings: Settings) -> T:
        engine = make_engine(settings, pool_size=1)
        try:
            with origin.bound(origin.operator(command)):
                return await in_transaction(engine, work)
        finally:
            await engine.dispose()

    return _run(go)


def _read_password(from_env: str | None) -> str:
    """From the named environment variable, else the first line of stdin (a prompt, not
    echoed, when stdin is a terminal): never from the command line, where `ps` shows it."""
    import os

    if from_env:
        value = os.environ.get(from_env)
        if not value:
            raise click.ClickException(f"environment variable {from_env} is not set")
        return value
    if sys.stdin.isatty():
        value = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        return str(value)
    return sys.stdin.readline().rstrip("\r\n")


@staff.command("create")
@click.option("--email", required=True)
@click.option(
    "--role",
    required=True,
    type=click.Choice(["finance_admin", "support", "auditor", "member", "community_owner"]),
    help="The console lets in finance_admin, support and auditor.",
)
@click.option(
    "--password-env",
    default=None,
    metavar="VAR",
    help="Read the password from this environment variable (default: stdin).",
)
def staff_create(email: str, role: str, password_env: str | None) -> None:
    """Create a console account. Audited (`console.staff.created`, as cli:<os user>)."""
    from commdesk_billing.console import passwords, sessions

    password = _read_password(password_env)
    try:
        passwords.check_strength(password)
        address = sessions.normalize_email(email)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    async def work(conn: Any) -> Any:
        return await sessions.create_staff(conn, address, role, password)

    try:
        staff_id = _staff_action(f"staff create {address}", work)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {role} {address} ({staff_id})")


@staff.command("set-password")
@click.option("--email", required=True)
@click.option("--password-env", default=None, metavar="VAR", help="As for `staff create`.")
def staff_set_password(email: str, password_env: str | None) -> None:
    """Give an account a new password (its sessions end). Audited."""
    from commdesk_billing.console import passwords, sessions

    password = _read_password(password_env)
    try:
        passwords.check_strength(password)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc

    async def work(conn: Any) -> None:
        await sessions.set_password(conn, email, password)

    try:
        _staff_action(f"staff set-password {email[:190]}", work)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password set for {email}; its sessions ended")


@staff.command("disable")
@click.option("--email", required=True)
@click.option("--enable", is_flag=True, help="Enable a disabled account again instead.")
def staff_disable(email: str, enable: bool) -> None:
    """Disable a console account (its sessions end at once), or enable it again."""
    from commdesk_billing.console import sessions

    async def work(conn: Any) -> None:
        await sessions.set_disabled(conn, email, not enable)

    try:
        _staff_action(f"staff {'enable' if enable else 'disable'} {email[:190]}", work)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(("enabled " if enable else "disabled ") + email)


@main.group()
def holds() -> None:
    """Hold housekeeping."""


@holds.command("expire")
@json_option
def holds_expire(as_json: bool) -> None:
    """Release every active hold past its expiry (the scheduler runs this periodically)."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.wallet.jobs import expire_holds

    async def go(settings: Settings) -> int:
        engine = make_engine(settings, pool_size=2)
        try:
            return await expire_holds(engine)
        finally:
            await engine.dispose()

    released = _run(go)
    emit(as_json, {"released": released}, f"released {released} expired hold(s)")


class _Readiness:
    """What the process's `/readyz` reports; its command points `source` at the real thing."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, bool]] = lambda: {"started": False}

    def checks(self) -> Mapping[str, bool]:
        return self.source()


Serve = Callable[[asyncio.Event, _Readiness], Coroutine[Any, Any, None]]


def _serve_until_signalled(run: Serve, service: str) -> None:
    """Run until SIGTERM/SIGINT, then let `run` wind down gracefully, on uvloop
    (`eventloop.run`). With BILLING_WORKER_METRICS_PORT set, `/metrics`, `/healthz` and
    `/readyz` are served on it."""
    import signal

    from commdesk_billing import eventloop
    from commdesk_billing.telemetry.health import HealthServer

    async def go(settings: Settings) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        readiness = _Readiness()
        server = None
        if settings.worker_metrics_port:
            server = HealthServer(
                settings.worker_metrics_port, readiness.checks, host=settings.worker_metrics_host
            )
            await server.start()
        try:
            await run(stop, readiness)
        finally:
            if server is not None:
                await server.stop()

    settings = _settings()
    _logs(settings, service)
    eventloop.run(go(settings))


async def _start_unless_stopped(start: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Start, unless a signal comes first: a process still connecting (a broker down or
    wedged) stops within seconds of SIGTERM instead of finishing its connect attempts."""
    starting = asyncio.create_task(start)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()
            return True
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        return False
    finally:
        stopping.cancel()


@main.command()
@click.option("--no-relay", is_flag=True, help="Consumers only; run the outbox relay elsewhere.")
@click.option("--no-consumers", is_flag=True, help="Outbox relay only.")
def worker(no_relay: bool, no_consumers: bool) -> None:
    """RabbitMQ consumers and the outbox relay (stops gracefully on SIGTERM)."""
    from commdesk_billing import eventloop, wiring

    settings = _settings()

    async def run(stop: asyncio.Event, readiness: _Readiness) -> None:
        w = wiring.worker(settings, consumers=not no_consumers, relay=not no_relay)
        readiness.source = w.readiness
        try:
            if await _start_unless_stopped(w.start(), stop):
                eventloop.settle_heap()
                await stop.wait()
        finally:
            await w.stop()

    _serve_until_signalled(run, "worker")


@main.command()
def scheduler() -> None:
    """Periodic jobs (hold expiry, ledger sealing, outbox/inbox pruning), one leader at a time."""
    from commdesk_billing import wiring
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.communities.mongo import community_directory
    from commdesk_billing.queues.scheduler import Scheduler

    settings = _settings()

    async def run(stop: asyncio.Event, readiness: _Readiness) -> None:
        wiring.install()
        engine = make_engine(settings, direct=True, pool_size=3)
        # Settlements ask it about community payees; it connects on first use, so the
        # scheduler starts (and runs every other job) while MongoDB is down.
        communities = community_directory(settings)
        try:
            scheduler = Scheduler(settings, wiring.jobs(settings, engine, communities))
            # Ready while its loop runs, leading or standing by (a standby is doing its job).
            readiness.source = lambda: {"running": True}
            await scheduler.run(stop)
        finally:
            await communities.aclose()
            await engine.dispose()

    _serve_until_signalled(run, "scheduler")


@main.group()
def queues() -> None:
    """Queue inspection."""


BROKER_OVERALL_TIMEOUT_S = 60


def _broker_call(settings: Settings, work: Coroutine[Any, Any, T]) -> T:
    """Run an operator command that talks to RabbitMQ: bounded as a whole, and a failure
    named in words an operator can act on (never a traceback)."""
    from urllib.parse import urlsplit

    where = urlsplit(settings.rabbitmq_url)
    broker = f"{where.hostname}:{where.port or (5671 if where.scheme == 'amqps' else 5672)}"

    async def bounded() -> T:
        return await asyncio.wait_for(work, timeout=BROKER_OVERALL_TIMEOUT_S)

    try:
        return asyncio.run(bounded())
    except TimeoutError:
        raise Failure.of(
            f"RabbitMQ at {broker} did not answer in time: it accepts TCP but does not answer "
            f"AMQP (connect timeout {settings.rabbitmq_connect_timeout_s:g} s, overall "
            f"{BROKER_OVERALL_TIMEOUT_S} s); see the runbook, 'When RabbitMQ is down'",
            EXIT_UNAVAILABLE,
        ) from None
    except OSError as exc:
        raise Failure.of(f"cannot reach RabbitMQ at {broker}: {exc}", EXIT_UNAVAILABLE) from None
    except ValueError as exc:  # an unknown queue name
        raise Failure.of(str(exc), EXIT_REFUSED) from None


def _run_broker(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    settings = _settings()
    _logs(settings)
    return _broker_call(settings, fn(settings))


@queues.command("status")
@json_option
def queues_status(as_json: bool) -> None:
    """The outbox (from PostgreSQL, first), then depth, consumers and dead letters per queue
    and the shared retry tiers (from RabbitMQ, bounded in time)."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.queues.admin import broker_status
    from commdesk_billing.queues.outbox import backlog

    async def database(settings: Settings) -> tuple[int, float | None]:
        engine = make_engine(settings, pool_size=1)
        try:
            return await backlog(engine)
        finally:
            await engine.dispose()

    unsent, age = _run(database)
    outbox = f"outbox: {unsent} unsent" + (f", oldest {age:.1f} s" if age is not None else "")
    if not as_json:
        click.echo(outbox)
    queues_, tiers = _run_broker(broker_status)
    if as_json:
        shown = {
            "queues": [q.__dict__ for q in queues_],
            "retry_tiers": [t.__dict__ for t in tiers],
            "outbox_unsent": unsent,
            "outbox_oldest_unsent_s": age,
        }
        click.echo(to_json(shown))
        return
    click.echo(
        table(
            ["queue", "ready", "consumers", "dead"],
            [(q.queue, q.ready, q.consumers, q.dead_letters) for q in queues_],
        )
    )
    waiting = sum(max(t.waiting, 0) for t in tiers)
    click.echo(
        f"retrying: {waiting} (" + ", ".join(f"{t.delay_s:g} s: {t.waiting}" for t in tiers) + ")"
    )


@main.group()
def dlq() -> None:
    """Dead-letter queues: list, show, replay, purge."""


@dlq.command("list")
@click.argument("queue")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def dlq_list_cmd(queue: str, limit: int, as_json: bool) -> None:
    """Dead letters of QUEUE with their reasons (nothing is removed)."""
    from commdesk_billing.queues.admin import dlq_list

    found = _run_broker(lambda s: dlq_list(s, queue, limit))
    emit(
        as_json,
        [d.__dict__ for d in found],
        table(
            ["message_id", "type", "attempts", "reason", "detail"],
            [(d.message_id, d.type, d.attempts, d.reason, d.detail[:100]) for d in found],
        ),
    )


@dlq.command("show")
@click.argument("queue")
@click.argument("message_id")
def dlq_show_cmd(queue: str, message_id: str) -> None:
    """One dead letter in full: headers and body."""
    from commdesk_billing.queues.admin import dlq_list

    found = [
        d for d in _run_broker(lambda s: dlq_list(s, queue, 10_000)) if d.message_id == message_id
    ]
    if not found:
        raise Failure.of(f"no dead letter {message_id} in {queue}", EXIT_REFUSED)
    click.echo(to_json(found[0].__dict__))


async def _audited_broker_action(
    settings: Settings, command: str, action: str, queue: str, act: Callable[[], Any]
) -> Any:
    """An operator's action on a dead-letter queue, with its audit entry
    (`modules/audit/operator.py`): as `cli:<os user>`, the queue's depth before and after."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.audit.operator import Acted, audited
    from commdesk_billing.queues.admin import dlq_depth
    from commdesk_billing.security import origin

    async def measured() -> Acted[Any]:
        before = await dlq_depth(settings, queue)
        result, details = await act()
        after = await dlq_depth(settings, queue)
        return Acted(result, {"dead_letters": before}, {"dead_letters": after}, details)

    engine = make_engine(settings, pool_size=1)
    try:
        with origin.bound(origin.operator(command)):
            return await audited(
                engine, action=action, target_type="queue", target_id=queue, act=measured
            )
    finally:
        await engine.dispose()


@dlq.command("replay")
@click.argument("queue")
@click.option("--id", "message_id", default=None, help="Only this message; default: all.")
@json_option
def dlq_replay_cmd(queue: str, message_id: str | None, as_json: bool) -> None:
    """Send dead letters back to QUEUE with a fresh attempt count (after fixing the cause).
    Audited (`dlq.replayed`, as cli:<os user>)."""
    from commdesk_billing.queues.admin import dlq_replay

    async def act(settings: Settings) -> tuple[tuple[int, int], dict[str, Any]]:
        done = await dlq_replay(settings, queue, message_id)
        return done, {"message_id": message_id, "replayed": done[0], "skipped": done[1]}

    command = f"dlq replay {queue}" + (f" --id {message_id}" if message_id else "")
    replayed, skipped = _run_broker(
        lambda s: _audited_broker_action(s, command, "dlq.replayed", queue, lambda: act(s))
    )
    emit(
        as_json,
        {"queue": queue, "replayed": replayed, "skipped": skipped},
        f"replayed {replayed} message(s) to {queue}"
        + (f"; {skipped} not replayable (not an envelope) left in place" if skipped else ""),
    )


@dlq.command("purge")
@click.argument("queue")
@click.option("--yes", is_flag=True, help="Confirm: the messages are gone for good.")
@json_option
def dlq_purge_cmd(queue: str, yes: bool, as_json: bool) -> None:
    """Delete every dead letter of QUEUE. Audited (`dlq.purged`, as cli:<os user>)."""
    from commdesk_billing.queues.admin import dlq_purge

    if not yes:
        raise click.ClickException("purging deletes messages for good; add --yes")

    async def act(settings: Settings) -> tuple[int, dict[str, Any]]:
        purged = await dlq_purge(settings, queue)
        return purged, {"purged": purged}

    purged = _run_broker(
        lambda s: _audited_broker_action(
            s, f"dlq purge {queue}", "dlq.purged", queue, lambda: act(s)
        )
    )
    emit(as_json, {"queue": queue, "purged": purged}, f"purged {purged} message(s)")


@main.command()
@click.option(
    "--source",
    "sources",
    multiple=True,
    type=click.Choice(["internal", "gateway", "payouts"]),
    help="Only these sources (repeatable); default: all three.",
)
@json_option
def reconcile(sources: tuple[str, ...], as_json: bool) -> None:
    """Reconcile the books (ledger verify's invariants), payments and refunds against
    Cashfree's settlement reports, and payouts against Cashfree's transfers; record each
    mismatch as a finding. Exit 0: no open finding; 1: open findings exist; 4: a source could
    not run (Cashfree or the database did not answer), so the picture is incomplete."""
    from commdesk_billing import wiring
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.reconciliation.model import RunSummary, Source
    from commdesk_billing.modules.reconciliation.runner import run

    async def go(settings: Settings) -> RunSummary:
        engine = make_engine(settings, pool_size=2)
        try:
            return await run(
                engine,
                settings,
                checks=wiring.verify_checks(),
                sources=[Source(s) for s in sources] or list(Source),
            )
        finally:
            await engine.dispose()

    summary = _run(go)
    rows = [
        (
            s.source.value,
            s.checked,
            s.matched,
            s.explained_differences,
            s.mismatches,
            s.opened,
            s.seen_again,
            s.reopened,
            f"FAILED: {s.error}" if s.error else "ok",
        )
        for s in summary.sources
    ]
    headers = ("source", "checked", "matched", "fee/GST", "mismatch", "opened", "again")
    emit(
        as_json,
        {
            "open_findings": summary.open_findings,
            "sources": [{**s.__dict__, "source": s.source.value} for s in summary.sources],
        },
        table((*headers, "reopened", "run"), rows) + f"\nopen findings: {summary.open_findings}",
    )
    failed = [s for s in summary.sources if s.error]
    if failed:
        raise Failure.of(
            "; ".join(f"{s.source.value}: {s.error}" for s in failed)
            + "; the other sources were reconciled, run again once it answers",
            EXIT_UNAVAILABLE,
        )
    sys.exit(EXIT_FINDINGS if summary.open_findings else 0)


@main.command()
@click.option("--api-url", default=None, help="Use a running stack instead of starting one.")
def demo(api_url: str | None) -> None:
    """Buy the ₹300 pack through the Cashfree sandbox as a person would; check the books."""
    from commdesk_billing import wiring
    from commdesk_billing.demo import run_demo

    wiring.install()

    settings = _settings()
    _logs(settings, "demo", "WARNING")
    sys.exit(asyncio.run(run_demo(settings, api_url)))


@main.command()
@click.option("--api-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--sandbox-port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--mongodb-port",
    default=27017,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="The loopback MongoDB's port, when BILLING_MONGODB_URL is not set.",
)
def dev(api_port: int, sandbox_port: int, mongodb_port: int) -> None:
    """API, worker, scheduler and the Cashfree sandbox together, until Ctrl-C. Without
    BILLING_MONGODB_URL, a loopback MongoDB too (its data kept in var/mongodb)."""
    import signal
    from pathlib import Path

    from commdesk_billing.stack import running_stack

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with running_stack(
            api_port=api_port,
            sandbox_port=sandbox_port,
            quiet=False,
            mongodb_port=mongodb_port,
            # Kept across restarts, like var/documents: a seeded community stays seeded.
            mongodb_dir=Path("var/mongodb"),
        ) as stack:
            click.echo(f"API {stack.api_url}  (docs {stack.api_url}/docs)")
            click.echo(
                f"Finance console {stack.api_url}/console  (a staff account: commdesk-billing "
                "staff create --email E --role finance_admin)"
            )
            click.echo(f"Cashfree sandbox {stack.sandbox_url}/pg")
            click.echo(f"MongoDB (communities) {stack.mongodb}")
            if stack.jwt_key_file is not None:
                click.echo(
                    f"JWKS {stack.env['BILLING_JWT_JWKS_URL']}; RS256 tokens: "
                    f"BILLING_DEV_JWT_KEY_FILE={stack.jwt_key_file} commdesk-billing token ..."
                )
            for name, url in stack.health_urls.items():
                click.echo(f"{name} ready ({url}/readyz, {url}/metrics)")
            click.echo("Ctrl-C stops everything")
            waiter = asyncio.create_task(stop.wait())
            procs = [asyncio.create_task(p.wait()) for p in stack.processes.values()]
            await asyncio.wait([waiter, *procs], return_when=asyncio.FIRST_COMPLETED)
            if (problem := stack.failed()) is not None:
                click.echo(f"stopping: {problem}", err=True)

    _settings()
    asyncio.run(go())


@main.group()
def communities() -> None:
    """CommDesk's communities (read from MongoDB)."""


@communities.command("seed-demo")
@click.option("--id", "community_id", default="demo-community", show_default=True)
@click.option("--name", default="Demo Community", show_default=True)
@click.option(
    "--owner", "owners", multiple=True, required=True, help="An owner's user id; repeatable."
)
@click.option(
    "--force", is_flag=True, help="Write to a MongoDB that is not on this machine as well."
)
def communities_seed_demo(
    community_id: str, name: str, owners: tuple[str, ...], force: bool
) -> None:
    """Upsert an active demo community into BILLING_MONGODB_URL's `communities`.

    Billing never writes CommDesk's collection in production: this is for development and
    tests, and refuses a MongoDB off this machine unless --force (and production always)."""
    from pymongo.errors import PyMongoError

    from commdesk_billing.config import Environment
    from commdesk_billing.errors import DomainError
    from commdesk_billing.modules.communities import mongo

    settings = _settings()
    url = settings.mongodb_url.get_secret_value()
    if settings.env is Environment.production:
        raise click.ClickException("billing never writes CommDesk's communities in production")
    if not mongo.is_loopback(url) and not force:
        raise click.ClickException(
            f"{mongo.servers(url)} is not on this machine: billing only reads CommDesk's "
            "communities; add --force to write a demo community there anyway"
        )
    try:
        created = _run(
            lambda s: mongo.seed_community(
                s, community_id, name=name, owner_ids=list(dict.fromkeys(owners))
            )
        )
    except DomainError as exc:  # an id no community can have
        raise click.ClickException(exc.detail) from exc
    except ValueError as exc:  # a record the directory itself would refuse
        raise click.ClickException(str(exc)) from exc
    except PyMongoError as exc:
        raise click.ClickException(
            f"MongoDB at {mongo.servers(url)} did not take the write: {type(exc).__name__}"
        ) from exc
    click.echo(
        f"community {community_id} {'created' if created else 'updated'} in "
        f"{settings.mongodb_database}.communities at {mongo.servers(url)}: active, owners "
        + ", ".join(dict.fromkeys(owners))
    )


@main.command("smtp-sink")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=2525, show_default=True, type=click.IntRange(1, 65535))
@click.option("--maildir", default="var/mail", show_default=True, type=click.Path())
def smtp_sink(host: str, port: int, maildir: str) -> None:
    """A loopback SMTP server writing each message it is sent into MAILDIR (development:
    point BILLING_SMTP_HOST/PORT at it, with BILLING_SMTP_STARTTLS=false)."""
    import signal
    from pathlib import Path

    from commdesk_billing.mailsink import serve

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"SMTP sink on {host}:{port}, writing to {maildir}/new")
        await serve(host, port, Path(maildir), stop)

    asyncio.run(go())


@main.group()
def notifications() -> None:
    """Billing notifications: inspect deliveries, send what is due, retry a failed one."""


@notifications.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "failed", "skipped"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@json_option
def notifications_list(status: str | None, limit: int, as_json: bool) -> None:
    """The latest deliveries (the address masked), newest change first."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.notifications import service
    from commdesk_billing.modules.notifications.model import Delivery, DeliveryStatus

    async def go(settings: Settings) -> list[Delivery]:
        engine = make_engine(settings, pool_size=2)
        try:
            async with engine.connect() as conn:
                return await service.recent(conn, DeliveryStatus(status) if status else None, limit)
        finally:
            await engine.dispose()

    found = _run(go)
    emit(
        as_json,
        [
            {
                "id": d.id,
                "status": d.status.value,
                "channel": d.channel.value,
                "attempts": d.attempts,
                "notification_key": d.notification_key,
                "recipient": d.recipient,
                "last_error": d.last_error,
            }
            for d in found
        ],
        table(
            ["id", "status", "channel", "attempts", "notification", "recipient", "last error"],
            [
                (
                    d.id,
                    d.status.value,
                    d.channel.value,
                    d.attempts,
                    d.notification_key,
                    d.recipient,
                    d.last_error,
                )
                for d in found
            ],
        ),
    )


@notifications.command("deliver")
@json_option
def notifications_deliver(as_json: bool) -> None:
    """Send what is due now (what the scheduler's deliver_notifications job does)."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.modules.notifications.jobs import Round, deliver_due

    async def go(settings: Settings) -> Round:
        engine = make_engine(settings, pool_size=2)
        try:
            return await deliver_due(engine, settings)
        finally:
            await engine.dispose()

    r = _run(go)
    emit(
        as_json,
        r.__dict__,
        f"claimed {r.claimed}: sent {r.sent}, retrying {r.retrying}, failed {r.failed}, "
        f"skipped {r.skipped}",
    )


@notifications.command("retry")
@click.argument("delivery_id", type=click.UUID)
@json_option
def notifications_retry(delivery_id: uuid.UUID, as_json: bool) -> None:
    """Make a delivery that failed for good, or was skipped, due again (after fixing the
    cause: a relay's refusal resolved, a channel configured)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from commdesk_billing.db.engine import in_transaction, make_engine
    from commdesk_billing.modules.audit import service as audit
    from commdesk_billing.modules.notifications import service
    from commdesk_billing.security import origin

    async def work(c: AsyncConnection) -> bool:
        due = await service.retry_failed(c, delivery_id)
        if due:  # audited with the change, in its transaction
            await audit.record(
                c,
                None,
                action="notification.retried",
                target_type="notification_delivery",
                target_id=str(delivery_id),
                after={"status": "pending"},
            )
        return due

    async def go(settings: Settings) -> bool:
        engine = make_engine(settings, pool_size=2)
        try:
            with origin.bound(origin.operator(f"notifications retry {delivery_id}")):
                return await in_transaction(engine, work)
        finally:
            await engine.dispose()

    if not _run(go):
        raise Failure.of(f"no failed or skipped delivery {delivery_id}", EXIT_REFUSED)
    emit(as_json, {"delivery_id": delivery_id, "due": True}, f"delivery {delivery_id} is due again")


@main.group()
def analytics() -> None:
    """Financial analytics rollups."""


@analytics.command("rebuild")
@click.option("--from", "date_from", required=True, help="First day, YYYY-MM-DD (IST).")
@click.option("--to", "date_to", required=True, help="Last day, inclusive, YYYY-MM-DD (IST).")
@click.option(
    "--mongo/--no-mongo",
    default=True,
    show_default=True,
    help="Write the communities' activity to MongoDB too.",
)
@json_option
def analytics_rebuild(date_from: str, date_to: str, mongo: bool, as_json: bool) -> None:
    """Recompute every rollup bucket of the days from the source rows (the ledger, payments,
    refunds, ...): safe to run at any time, over days already done too. At most 3660 days
    per run."""
    from commdesk_billing.db.engine import make_engine
    from commdesk_billing.errors import InvalidPeriod
    from commdesk_billing.modules.analytics import rollups
    from commdesk_billing.modules.analytics.activity import CommunityActivity
    from commdesk_billing.modules.analytics.periods import parse_period

    try:
        period = parse_period(date_from, date_to, max_days=3660)
    except InvalidPeriod as exc:
        raise click.BadParameter(exc.detail) from exc

    async def go(settings: Settings) -> int:
        engine = make_engine(settings, pool_size=2)
        sink = CommunityActivity(settings) if mongo else None
        try:
            return await rollups.rebuild(engine, period, sink)
        finally:
            if sink is not None:
                await sink.aclose()
            await engine.dispose()

    days = _run(go)
    emit(
        as_json,
        {"days": days, "from": period.first.isoformat(), "to": period.last.isoformat()},
        f"rebuilt {days} days of analytics rollups, {period.first} to {period.last}",
    )


main.add_command(sandbox_command)


if __name__ == "__main__":  # pragma: no cover
    main()
