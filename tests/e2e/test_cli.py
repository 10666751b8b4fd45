"""The README's path, as a person takes it: migrate, token, api, call it, demo, verify."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import aio_pika
import httpx
import pytest

from commdesk_billing.config import Settings
from commdesk_billing.queues.topology import Names, delete

# Each test starts CLI processes (and the demo a whole stack): seconds to tens of seconds.
pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "commdesk_billing.cli"]


def _env(database_url: str) -> dict[str, str]:
    return {**os.environ, "BILLING_DATABASE_URL": database_url, "BILLING_LOG_JSON": "false"}


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
async def api_url(database_url: str, settings: Settings) -> AsyncIterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The run's MongoDB too: /readyz pings it, and a MongoDB that is not there costs that
    # ping its whole timeout on every poll.
    env = {
        **_env(database_url),
        "BILLING_MONGODB_URL": settings.mongodb_url.get_secret_value(),
        "BILLING_MONGODB_DATABASE": settings.mongodb_database,
    }
    proc = await asyncio.create_subprocess_exec(*CLI, "api", "--port", str(port), env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            # A process start on a loaded two-core machine (imports, migrations checked,
            # pools opened) can take tens of seconds; what is tested is the answer, not the time.
            deadline = time.monotonic() + 90
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("the API did not become ready in 90 s")
                await asyncio.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=15)


async def test_token_then_call_the_running_api(database_url: str, api_url: str) -> None:
    tok = await asyncio.to_thread(
        _cli, database_url, "token", "--sub", "cli-user", "--role", "member"
    )
    assert tok.returncode == 0, tok.stderr
    async with httpx.AsyncClient(base_url=api_url) as client:
        r = await client.get(
            "/v1/wallets/me", headers={"Authorization": f"Bearer {tok.stdout.strip()}"}
        )
    assert r.status_code == 200 and r.json()["available_credits"] == 0
    sync = await asyncio.to_thread(
        _cli, database_url, "wallet", "sync-balance", r.json()["id"], "--json"
    )
    assert sync.returncode == 0 and '"drift": {}' in sync.stdout


async def test_the_quick_start_demo_buys_a_pack_then_verify(
    scratch_database_url: str, rabbitmq_url: str
) -> None:
    """`demo` as the quick start runs it: it starts sandbox, API, worker and scheduler itself.
    A database and queue names of its own keep other tests' workers out of its way."""
    prefix = f"demo{uuid.uuid4().hex[:8]}."
    env = {
        **_env(scratch_database_url),
        "BILLING_RABBITMQ_URL": rabbitmq_url,
        "BILLING_RABBITMQ_QUEUE_PREFIX": prefix,
    }
    try:
        demo = await asyncio.to_thread(
            subprocess.run,
            [*CLI, "demo"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "demo: OK" in demo.stdout
        assert "payment CREDITED with 3200 credits" in demo.stdout
        verify = await asyncio.to_thread(_cli, scratch_database_url, "ledger", "verify", "--seal")
        assert verify.returncode == 0, verify.stdout
        assert "ledger OK" in verify.stdout
    finally:
        connection = await aio_pika.connect(rabbitmq_url)
        async with connection:
            await delete(await connection.channel(), Names(prefix, len(Settings().retry_delays_s)))


async def test_operator_commands(database_url: str) -> None:
    again = await asyncio.to_thread(_cli, database_url, "migrate")
    assert again.returncode == 0, again.stderr  # migrating twice is harmless
    expired = await asyncio.to_thread(_cli, database_url, "holds", "expire")
    assert expired.returncode == 0 and "expired hold" in expired.stdout
    sealed = await asyncio.to_thread(_cli, database_url, "ledger", "seal")
    assert sealed.returncode == 0 and "sealed" in sealed.stdout
    bad_env = {**_env(database_url), "BILLING_DB_POOL_SIZE": "zero"}
    bad = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "ledger", "verify"],
        capture_output=True,
        text=True,
        timeout=60,
        env=bad_env,
        check=False,
    )
    assert bad.returncode != 0 and "configuration is not valid" in bad.stderr


def _plain_failure(done: subprocess.CompletedProcess[str], exit_code: int, words: str) -> None:
    """One `Error: …` line, last on stderr, the exit code given, and never a traceback."""
    assert done.returncode == exit_code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert done.stderr.rstrip().splitlines()[-1] == errors[0]
    assert words in errors[0], errors[0]


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (("wallet", "sync-balance", str(uuid.uuid4())), 3, "does not exist"),
        (("wallet", "sync-balance", "not-a-uuid"), 2, "not a valid UUID"),
        (("notifications", "retry", str(uuid.uuid4())), 3, "no failed or skipped delivery"),
        (("dlq", "list", "nope"), 3, "unknown queue 'nope'"),
        (("dlq", "purge", "payment.processing"), 3, "add --yes"),
        (("token", "--sub", "x", "--role", "emperor"), 2, "'emperor' is not one of"),
        (("ledger", "verify", "--bogus"), 2, "No such option"),
        (("ledger", "verify", "--jobs", "0"), 2, "not in the range"),
    ],
)
async def test_every_cli_error_is_one_line_and_an_exit_code(
    database_url: str, args: tuple[str, ...], exit_code: int, words: str
) -> None:
    done = await asyncio.to_thread(_cli, database_url, *args)
    _plain_failure(done, exit_code, words)


@pytest.mark.parametrize(
    "args",
    [
        ("holds", "expire"),
        ("ledger", "verify"),
        ("wallet", "sync-balance", str(uuid.uuid4())),
        ("reconcile", "--source", "internal"),
    ],
)
async def test_a_database_away_is_exit_4_in_plain_words(args: tuple[str, ...]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = await asyncio.to_thread(_cli, f"postgresql://postgres@127.0.0.1:{port}/none", *args)
    _plain_failure(done, 4, "did not answer")
    assert "nothing was changed" in done.stderr


async def test_bad_configuration_is_exit_5_naming_the_setting(database_url: str) -> None:
    env = {**_env(database_url), "BILLING_DB_POOL_SIZE": "zero"}
    done = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "holds", "expire"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    _plain_failure(done, 5, "db_pool_size")


async def test_version_json_and_verify_reports_its_checks_and_duration(database_url: str) -> None:
    version = await asyncio.to_thread(_cli, database_url, "--version")
    assert version.returncode == 0 and version.stdout.startswith("commdesk-billing, version ")
    import json

    sealed = await asyncio.to_thread(_cli, database_url, "ledger", "seal", "--json")
    assert sealed.returncode == 0 and set(json.loads(sealed.stdout)) >= {"entries", "blocks"}
    verified = await asyncio.to_thread(
        _cli, database_url, "ledger", "verify", "--json", "--progress"
    )
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)  # progress went to stderr: stdout is one document
    names = [c["name"] for c in report["checks"]]
    assert report["ok"] is True and report["duration_s"] > 0 and len(names) > 10
    assert report["jobs"] == 2  # BILLING_LEDGER_VERIFY_JOBS's default
    # A line per check, `[i/n] name (seconds)`; the walks' progress bars are lines of their own.
    progress = [ln for ln in verified.stderr.splitlines() if re.match(r"^\[\d+/\d+\] ", ln)]
    assert len(progress) == len(names) and progress[-1].startswith(f"[{len(names)}/{len(names)}]")
    plain = await asyncio.to_thread(_cli, database_url, "ledger", "verify", "--jobs", "3")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert f"{len(names)} checks in " in plain.stdout and names[0] in plain.stdout
    holds = await asyncio.to_thread(_cli, database_url, "holds", "expire", "--json")
    assert json.loads(holds.stdout) == {"released": 0}
