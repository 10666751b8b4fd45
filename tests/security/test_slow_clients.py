"""Slow clients on raw sockets: a request head must arrive within BILLING_HTTP_HEADER_TIMEOUT_S
(uvicorn has no such bound of its own: the control test shows a plain uvicorn holding the
same connection open), heads are bounded in size, and no answer names our server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.stack import free_port
from tests.harness.servers import bound_socket, url_of
from tests.security.served import served

pytestmark = pytest.mark.slow

BOUND_S = 1.0
# A loaded machine may be late to fire the deadline; never by this much.
SLACK_S = 1.5


async def _slow_client(
    url: str, head: bytes, drip: bytes = b"", every_s: float = 0.2, wait_s: float = 6.0
) -> tuple[bytes | None, float]:
    """Sends `head`, then `drip` a byte at a time every `every_s` (over and over), until the
    server closes. Returns what it answered (None: still open after `wait_s`) and when."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()

    async def dripping() -> None:
        writer.write(head)
        if drip:
            await asyncio.sleep(every_s)
            await _drip(writer, drip * 100, every_s)

    task = asyncio.create_task(dripping())
    try:
        answer: bytes | None = await asyncio.wait_for(reader.read(), wait_s)
    except TimeoutError:
        answer = None
    except ConnectionResetError:
        answer = b""
    elapsed = time.monotonic() - started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, ConnectionError):
        await task
    writer.close()
    return answer, elapsed


def _cut_in_time(answer: bytes | None, elapsed: float) -> None:
    assert answer is not None, "the slow client was never disconnected"
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer[:60]
    assert BOUND_S - 0.05 <= elapsed <= BOUND_S + SLACK_S, elapsed


async def test_a_head_sent_slowly_is_cut_at_the_deadline(settings: Settings) -> None:
    async with served(settings, http_header_timeout_s=BOUND_S) as api:
        url = str(api.base_url).rstrip("/")
        # One header byte every 0.2 s: always sending, never finishing.
        answer, elapsed = await _slow_client(
            url, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", drip=b"X-Slow: aaaaaaaa"
        )
        _cut_in_time(answer, elapsed)
        # Connected and silent: the same bound.
        answer, elapsed = await _slow_client(url, b"")
        _cut_in_time(answer, elapsed)
        # A whole head sent in pieces, quickly, is served.
        r = await api.get("/healthz")
        assert r.status_code == 200


async def test_the_next_head_on_a_kept_alive_connection_has_the_same_bound(
    settings: Settings,
) -> None:
    # Keep-alive far above the bound: what cuts the connection is the head's deadline.
    async with served(settings, http_header_timeout_s=BOUND_S, http_keep_alive_s=60) as api:
        host, port = str(api.base_url).removeprefix("http://").rstrip("/").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 ")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            await asyncio.sleep(BOUND_S + 0.5)  # idle, kept alive: longer than the bound
            started = time.monotonic()
            task = asyncio.create_task(_drip(writer, b"GET /healthz HTTP/1.1\r\nX-Slow: " * 9))
            try:
                answer = await asyncio.wait_for(reader.read(), 6)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await task
            _cut_in_time(answer, time.monotonic() - started)
        finally:
            writer.close()


async def _drip(writer: asyncio.StreamWriter, data: bytes, every_s: float = 0.2) -> None:
    """Writes `data` a byte at a time, `every_s` apart (the first at once)."""
    for i, byte in enumerate(data):
        if i:
            await asyncio.sleep(every_s)
        writer.write(bytes([byte]))
        await writer.drain()


async def test_a_head_past_64_kib_is_refused(settings: Settings) -> None:
    async with served(settings) as api:
        url = str(api.base_url).rstrip("/")
        padding = b"X-Pad: " + b"a" * 8000 + b"\r\n"
        answer, _ = await _slow_client(url, b"GET /healthz HTTP/1.1\r\n" + padding * 10)
        assert answer is not None
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


async def test_plain_uvicorn_keeps_a_slow_client_forever(settings: Settings) -> None:
    """The control: the same app under uvicorn's defaults never cuts the client, and names
    itself in a `server` header — what the two tests above would see without our protocol."""
    sock = bound_socket()
    config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        answer, _ = await _slow_client(
            url_of(sock), b"GET /healthz HTTP/1.1\r\n", drip=b"X-Slow: a", wait_s=3 * BOUND_S
        )
        assert answer is None  # still connected
        async with httpx.AsyncClient(base_url=url_of(sock)) as client:
            assert (await client.get("/healthz")).headers["server"] == "uvicorn"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@contextlib.asynccontextmanager
async def _cli_api(settings: Settings) -> AsyncIterator[str]:
    """`commdesk-billing api` as a deployment runs it."""
    port = free_port()
    env = {
        **os.environ,
        "BILLING_DATABASE_URL": settings.database_url,
        "BILLING_MONGODB_URL": settings.mongodb_url.get_secret_value(),
        "BILLING_MONGODB_DATABASE": settings.mongodb_database,
        "BILLING_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "BILLING_HTTP_HEADER_TIMEOUT_S": str(BOUND_S),
        "BILLING_LOG_LEVEL": "WARNING",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "commdesk_billing.cli", "api", "--port", str(port), env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(300):
                assert proc.returncode is None, "the API exited"
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()


async def test_the_cli_serves_without_banner_and_cuts_slow_heads(settings: Settings) -> None:
    async with _cli_api(settings) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/healthz", "/v1/wallets/me", "/nowhere"):
            r = await client.get(path)
            assert "server" not in r.headers and "date" in r.headers, path
            assert r.headers["x-content-type-options"] == "nosniff"
        answer, elapsed = await _slow_client(url, b"GET /healthz HTTP/1.1\r\n", drip=b"X-Slow: a")
        _cut_in_time(answer, elapsed)
