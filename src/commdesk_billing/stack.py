"""Start the whole stack as child processes: sandbox, API, worker, scheduler.

Used by `commdesk-billing dev` (in the foreground until Ctrl-C) and by `demo` when it is not
pointed at a running stack. Each process is the same CLI a deployment runs; the only glue is
environment variables telling the API where the sandbox is and the sandbox-facing URLs.
Where BILLING_MONGODB_URL is not given, a loopback MongoDB-wire server (`localmongo.py`) is
started first for the communities the API reads, and stopped last. Where BILLING_SMTP_HOST
is not given, a loopback SMTP sink (`commdesk-billing smtp-sink`) takes the stack's emails
and writes each into var/mail (a Maildir: one file per message in var/mail/new).
Where BILLING_JWT_JWKS_URL is not given, the stack plays CommDesk's identity service: a
fresh RS256 key pair per start (the private key in var/dev-jwt-key.pem, for `issue_token`
and `commdesk-billing token` through BILLING_DEV_JWT_KEY_FILE) and its JWKS served on a
loopback port the API is pointed at.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from commdesk_billing.gateway.sandbox.config import DEV_PAYOUT_CLIENT_ID, DEV_PAYOUT_CLIENT_SECRET
from commdesk_billing.localmongo import LocalMongo
from commdesk_billing.modules.communities.mongo import servers
from commdesk_billing.security.devkeys import JWKS_PATH, SigningKey, jwks_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    api_url: str
    sandbox_url: str
    mongodb: str  # where the communities are read: a URL without credentials
    env: dict[str, str]
    processes: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)
    # name → base URL of the process's /healthz, /readyz and /metrics
    health_urls: dict[str, str] = field(default_factory=dict)
    # Where the SMTP sink writes the emails sent (None: BILLING_SMTP_HOST names a relay).
    maildir: Path | None = None
    # The development signing key (None: BILLING_JWT_JWKS_URL names CommDesk's JWKS).
    jwt_key_file: Path | None = None

    def failed(self) -> str | None:
        for name, proc in self.processes.items():
            if proc.returncode is not None:
                return f"{name} exited with code {proc.returncode}"
        return None


async def _wait_http(url: str, stack: Stack, what: str, timeout_s: float = 120) -> None:
    """Until `url` answers 200, by the clock: on a loaded machine a process's start can take
    tens of seconds, and a poll that counted its attempts ran out sooner than it said."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if (problem := stack.failed()) is not None:
                raise RuntimeError(problem)
            try:
                answer = await client.get(url)
            except httpx.TransportError as exc:
                last = f"no answer ({type(exc).__name__})"
            else:
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code}: {answer.text[:300]}"
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready in {timeout_s:.0f} s (last: {last})")


@contextlib.asynccontextmanager
async def running_stack(
    *,
    api_port: int | None = None,
    sandbox_port: int | None = None,
    scheduler: bool = True,
    quiet: bool = True,
    mongodb_port: int | None = None,
    mongodb_dir: Path | None = None,
    settings_env: dict[str, str] | None = None,
) -> AsyncIterator[Stack]:
    """`mongodb_dir`: where the loopback MongoDB keeps its data (default: a temporary
    directory, removed with the stack); both `mongodb_*` only matter without
    BILLING_MONGODB_URL. `settings_env`: settings every process of the stack gets, where
    the environment does not set them already."""
    async with contextlib.AsyncExitStack() as exits:
        mongodb_url = os.environ.get("BILLING_MONGODB_URL")
        if mongodb_url is None:
            if mongodb_dir is None:
                mongodb_dir = Path(exits.enter_context(tempfile.TemporaryDirectory()))
            server = LocalMongo(mongodb_dir, port=mongodb_port or free_port())
            mongodb_url = (await exits.enter_async_context(server)).url
        smtp_env: dict[str, str] = {}
        if "BILLING_SMTP_HOST" not in os.environ:
            smtp_env = await exits.enter_async_context(smtp_sink_process(MAILDIR))
        jwt_env: dict[str, str] = {}
        if "BILLING_JWT_JWKS_URL" not in os.environ:
            jwt_env = await exits.enter_async_context(dev_identity(DEV_JWT_KEY_FILE))
        async with _children(
            mongodb_url,
            api_port=api_port,
            sandbox_port=sandbox_port,
            scheduler=scheduler,
            quiet=quiet,
            settings_env={**smtp_env, **jwt_env, **(settings_env or {})},
        ) as stack:
            stack.maildir = MAILDIR if smtp_env else None
            own_key = jwt_env.get("BILLING_DEV_JWT_KEY_FILE")
            stack.jwt_key_file = Path(own_key) if own_key else None
            yield stack


DEV_JWT_KEY_FILE = Path("var/dev-jwt-key.pem")


@contextlib.asynccontextmanager
async def dev_identity(key_file: Path) -> AsyncIterator[dict[str, str]]:
    """CommDesk's identity service, as far as billing sees it: a fresh key pair whose public
    half is served as a JWKS on a loopback port (in this process) until the block ends.
    Yields the settings that point the stack at it and let `issue_token` sign with it."""
    import uvicorn

    key = SigningKey.generate()
    saved = key.save(key_file)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(jwks_app(key), log_level="warning", access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(300):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()  # raises what stopped it
        if not server.started:
            raise RuntimeError("the development JWKS server did not start")
        yield {
            "BILLING_JWT_JWKS_URL": f"http://127.0.0.1:{port}{JWKS_PATH}",
            "BILLING_DEV_JWT_KEY_FILE": str(saved),
        }
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        sock.close()


MAILDIR = Path("var/mail")


@contextlib.asynccontextmanager
async def smtp_sink_process(maildir: Path) -> AsyncIterator[dict[str, str]]:
    """The SMTP sink as a child process on a free port; yields the settings that point
    billing's email at it."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commdesk_billing.cli",
        "smtp-sink",
        "--port",
        str(port),
        "--maildir",
        str(maildir),
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(300):  # until it accepts connections
            if proc.returncode is not None:
                raise RuntimeError(f"the SMTP sink exited with code {proc.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            break
        else:
            raise RuntimeError("the SMTP sink did not start in 30 s")
        yield {
            "BILLING_SMTP_HOST": "127.0.0.1",
            "BILLING_SMTP_PORT": str(port),
            "BILLING_SMTP_STARTTLS": "false",
        }
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()


# Where a local stack keeps the sealing keys it made (beside var/documents and var/mongodb):
# the local database's sealed numbers and fingerprints stay good from one run to the next.
LOCAL_KEYS = Path("var/payout-keys.json")


def _local_keys(path: Path = LOCAL_KEYS) -> dict[str, str]:
    """Sealing and fingerprint keys for a stack on this machine whose environment names
    none: made once (random, readable by this user only) and kept in `path`. Never used where
    the environment sets them, as a deployment does."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        keys = {
            "BILLING_PAYOUT_ACCOUNT_KEYS": json.dumps(
                {"local": base64.b64encode(os.urandom(32)).decode()}
            ),
            "BILLING_PAYOUT_ACCOUNT_KEY_ID": "local",
            "BILLING_PAYOUT_FINGERPRINT_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(keys, f)
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def _payouts_env(env: dict[str, str], sandbox_url: str, api_url: str) -> dict[str, str]:
    """Payouts and bank-account verification at the sandbox, with its development pair
    unless the environment names one (the sandbox reads the same variables, so both ends
    agree), and its webhooks to this API. Without sealing keys in the environment, the
    stack's own local keys (`_local_keys`)."""
    own = {
        # Where the sandbox sends Payouts' webhooks (Cashfree's dashboard setting).
        "BILLING_SANDBOX_PAYOUT_WEBHOOK_URL": f"{api_url}/v1/webhooks/cashfree-payouts",
        # Cashfree Subscriptions' webhooks (mandates and their charges) to our receiver.
        "BILLING_SANDBOX_SUBSCRIPTION_WEBHOOK_URL": f"{api_url}/v1/webhooks/cashfree/subscriptions",
        "BILLING_CASHFREE_PAYOUT_BASE_URL": f"{sandbox_url}/payout",
        "BILLING_CASHFREE_VERIFICATION_BASE_URL": f"{sandbox_url}/verification",
        "BILLING_CASHFREE_PAYOUT_CLIENT_ID": env.get(
            "BILLING_CASHFREE_PAYOUT_CLIENT_ID", DEV_PAYOUT_CLIENT_ID
        ),
        "BILLING_CASHFREE_PAYOUT_CLIENT_SECRET": env.get(
            "BILLING_CASHFREE_PAYOUT_CLIENT_SECRET", DEV_PAYOUT_CLIENT_SECRET
        ),
    }
    if "BILLING_PAYOUT_ACCOUNT_KEYS" not in env:
        own.update(_local_keys())
    return own


@contextlib.asynccontextmanager
async def _children(
    mongodb_url: str,
    *,
    api_port: int | None,
    sandbox_port: int | None,
    scheduler: bool,
    quiet: bool,
    settings_env: dict[str, str],
) -> AsyncIterator[Stack]:
    api_port = api_port or free_port()
    sandbox_port = sandbox_port or free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    env = {
        **os.environ,
        "BILLING_CASHFREE_BASE_URL": f"{sandbox_url}/pg",
        "BILLING_CASHFREE_CHECKOUT_URL": f"{sandbox_url}/pg/view/checkout"
        "?payment_session_id={payment_session_id}",
        "BILLING_PUBLIC_BASE_URL": api_url,
        "BILLING_API_PORT": str(api_port),
        "BILLING_MONGODB_URL": mongodb_url,
    }
    env.update(_payouts_env(env, sandbox_url, api_url))
    # The finance console's CSRF tokens need a secret: a fresh one per start unless one is
    # given (sessions then last as long as the stack, which is what development wants).
    if "BILLING_CSRF_SECRET" not in env:
        env["BILLING_CSRF_SECRET"] = secrets.token_urlsafe(32)
    env = {**settings_env, **env}
    if quiet:
        env.setdefault("BILLING_LOG_LEVEL", "WARNING")
    stack = Stack(api_url=api_url, sandbox_url=sandbox_url, mongodb=servers(mongodb_url), env=env)
    commands = {
        "sandbox": ["sandbox", "--port", str(sandbox_port)],
        "api": ["api", "--port", str(api_port)],
        "worker": ["worker"],
    }
    if scheduler:
        commands["scheduler"] = ["scheduler"]
    # The worker and the scheduler each answer /readyz on a port of their own.
    health = {name: free_port() for name in ("worker", "scheduler") if name in commands}
    try:
        for name, args in commands.items():
            own = {"BILLING_WORKER_METRICS_PORT": str(health[name])} if name in health else {}
            stack.processes[name] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "commdesk_billing.cli", *args, env={**env, **own}
            )
        await _wait_http(f"{sandbox_url}/_sandbox/health", stack, "the Cashfree sandbox")
        await _wait_http(f"{api_url}/readyz", stack, "the API")
        for name, port in health.items():
            # Ready means connected to the broker and consuming, not merely started.
            await _wait_http(f"http://127.0.0.1:{port}/readyz", stack, f"the {name}")
        stack.health_urls = {name: f"http://127.0.0.1:{port}" for name, port in health.items()}
        yield stack
    finally:
        for proc in stack.processes.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in stack.processes.values():
            try:
                await asyncio.wait_for(proc.wait(), timeout=40)
            except TimeoutError:
                proc.kill()
