"""Our API under uvicorn on a loopback socket, with settings of the test's own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from tests.harness.servers import serving

Routes = Callable[[FastAPI], None]


@contextlib.asynccontextmanager
async def served(
    settings: Settings, routes: Routes | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a freshly served API (lifespan and all), as the CLI serves it.
    `routes` adds test-only routes to the app before it serves."""
    app = create_app(settings.model_copy(update=overrides))
    if routes is not None:
        routes(app)
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield client


async def raw_exchange(url: str, request: bytes, timeout_s: float = 5.0) -> bytes:
    """Sends `request` bytes as they are and reads until the server closes."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
