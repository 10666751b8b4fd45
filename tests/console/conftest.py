"""The console served on a loopback socket (lifespan and all), its public URL its own, so
the browser's and httpx's Origin is ours; staff accounts made as the CLI makes them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.app import create_app
from commdesk_billing.config import Settings
from commdesk_billing.console import sessions
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.security import origin
from tests.harness.servers import bound_socket, serving, url_of

CSRF_SECRET = SecretStr("console-test-secret-" + "x" * 32)
PASSWORD = "correct horse battery staple"


@dataclass
class Console:
    url: str
    settings: Settings
    engine: AsyncEngine

    def client(self) -> httpx.AsyncClient:
        # Origin as a browser on our own page sends it.
        return httpx.AsyncClient(
            base_url=self.url, timeout=20, headers={"Origin": self.url}, follow_redirects=False
        )

    async def sign_in(self, client: httpx.AsyncClient, email: str) -> httpx.Response:
        return await client.post("/console/sign-in", data={"email": email, "password": PASSWORD})


async def make_staff(engine: AsyncEngine, role: str, email: str | None = None) -> str:
    address = email or f"{role}-{uuid.uuid4().hex[:8]}@commdesk.test"

    async def work(conn: Any) -> Any:
        return await sessions.create_staff(conn, address, role, PASSWORD)

    with origin.bound(origin.operator(f"staff create {address}")):
        await in_transaction(engine, work)
    return address


Staff = Callable[..., Awaitable[str]]


@pytest.fixture
def staff(engine: AsyncEngine) -> Staff:
    async def make(role: str = "finance_admin", email: str | None = None) -> str:
        return await make_staff(engine, role, email)

    return make


@pytest.fixture
async def console(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Console]:
    async with served_console(settings, engine) as served:
        yield served


def served_console(settings: Settings, engine: AsyncEngine, **overrides: Any) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def run() -> AsyncIterator[Console]:
        sock = bound_socket()
        url = url_of(sock)
        s = settings.model_copy(
            update={"public_base_url": url, "csrf_secret": CSRF_SECRET, **overrides}
        )
        async with serving(create_app(s), sock):
            yield Console(url, s, engine)

    return run()
