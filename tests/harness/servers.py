"""Run ASGI apps on real loopback sockets inside the test process (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from commdesk_billing.config import Settings
from commdesk_billing.httpserver import server_config


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def serving(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL."""
    sock = sock or bound_socket()
    settings = getattr(getattr(app, "state", None), "settings", None)
    config: uvicorn.Config
    # Idle connections are kept well past httpx's own 5 s expiry: with both at 5 s, a client
    # could send on a connection in the instant the server closed it (a ReadError in a
    # fixture's request, seen once in a full run). The client always lets go first now.
    keep_alive = 30
    if isinstance(settings, Settings):
        # Our API as the CLI serves it (httpserver.py): head deadline, no server banner.
        config = server_config(
            app, settings, log_level="warning", lifespan="on", timeout_keep_alive=keep_alive
        )
    else:
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            access_log=False,
            timeout_keep_alive=keep_alive,
        )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started, "server did not start"
        yield url_of(sock)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=10)
        sock.close()
