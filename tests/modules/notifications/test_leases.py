"""Two delivery jobs at once (two schedulers, or the CLI beside the scheduler): a delivery
is leased by the job that sends it, from when it sends it, so a slow round never has its
later sends taken and sent again by another job."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commdesk_billing.config import Settings
from commdesk_billing.modules.notifications import delivery, jobs
from commdesk_billing.modules.notifications.jobs import deliver_due
from tests.harness.servers import serving
from tests.modules.notifications.conftest import (
    WEBHOOK_SECRET,
    consume,
    deliveries,
    event,
    make_user,
)
from tests.modules.notifications.samples import full


@dataclass
class Gated:
    """A receiver that holds this test's requests: the first `first` until `release1`,
    the next one until `release2`, any later one not at all."""

    keys: set[str]
    first: int
    url: str = ""
    seen: list[str] = field(default_factory=list)  # notification id header, ours only
    release1: asyncio.Event = field(default_factory=asyncio.Event)
    release2: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, ok: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not ok():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), 30)


@pytest.fixture
async def gated() -> AsyncIterator[Gated]:
    state = Gated(keys=set(), first=jobs._CONCURRENCY)

    async def notify(request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        if body["notification_key"] in state.keys:
            state.seen.append(request.headers["x-commdesk-notification-id"])
            n = len(state.seen)
            state.changed.set()
            if n <= state.first:
                await state.release1.wait()
            elif n == state.first + 1:
                await state.release2.wait()
        return JSONResponse({"id": "ok"})

    app = Starlette(routes=[Route("/notify", notify, methods=["POST"])])
    async with serving(app) as url:
        state.url = f"{url}/notify"
        yield state


async def test_a_slow_round_keeps_its_later_sends_from_a_second_job(
    engine: AsyncEngine, settings: Settings, gated: Gated
) -> None:
    s = settings.model_copy(
        update={
            "smtp_host": None,
            "notify_webhook_url": gated.url,
            "notify_webhook_secret": SecretStr(WEBHOOK_SECRET),
        }
    )
    # What earlier tests left due is set aside (skipped: no channel configured), so the
    # batches hold this test's deliveries only.
    bare = settings.model_copy(update={"smtp_host": None, "notify_webhook_url": None})
    while (await deliver_due(engine, bare)).claimed:
        pass
    n = jobs._CONCURRENCY + 1
    for _ in range(n):  # payees: webhook only
        payload = {**full()["settlement.paid"], "settlement_id": str(uuid.uuid4())}
        gated.keys.add(await consume(engine, event("settlement.paid", payload)))
    lease = jobs._lease(s)
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    clock = [t0]
    first = asyncio.create_task(deliver_due(engine, s, clock=lambda: clock[0]))

    await gated.until(lambda: len(gated.seen) == jobs._CONCURRENCY)
    # The first sends take almost the whole lease; the last one starts only then.
    clock[0] = t0 + lease - timedelta(seconds=1)
    gated.release1.set()
    await gated.until(lambda: len(gated.seen) == n)
    # A second job, just past the lease the first round began with.
    await deliver_due(engine, s, now=t0 + lease + timedelta(seconds=1))
    gated.release2.set()
    await first

    assert len(gated.seen) == len(set(gated.seen)) == n  # each delivery sent once
    for key in gated.keys:
        (hook,) = (await deliveries(engine, key)).values()
        assert (hook.status.value, hook.attempts) == ("sent", 1)


@pytest.fixture
async def dripping() -> AsyncIterator[int]:
    """A server that answers a byte at a time, never finishing: each read is quick, so no
    per-step timeout ever fires (an HTTP answer's headers, an SMTP greeting's lines)."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first = await asyncio.wait_for(reader.read(1), 0.2)
        except TimeoutError:
            first = b""  # SMTP: the server speaks first
        writer.write(b"HTTP/1.1 200 OK\r\n" if first else b"")
        try:
            while True:
                writer.write(b"X-Slow: 1\r\n" if first else b"220-still here\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


async def test_a_send_that_never_ends_is_cut_before_its_lease_ends(
    engine: AsyncEngine, settings: Settings, dripping: int
) -> None:
    s = settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": dripping,
            "smtp_starttls": False,
            "smtp_timeout_s": 0.3,
            "notify_webhook_url": f"http://127.0.0.1:{dripping}/notify",
            "notify_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "notify_webhook_timeout_s": 0.3,
        }
    )
    user = await make_user(engine, f"slow-{uuid.uuid4().hex[:8]}@example.test")
    payload = {**full(str(user))["refund.succeeded"], "refund_id": str(uuid.uuid4())}
    key = await consume(engine, event("refund.succeeded", payload))
    assert delivery.send_deadline_s(s) < jobs._lease(s).total_seconds()
    # Unbounded, the round would hang past its lease, and another job would send again.
    await asyncio.wait_for(deliver_due(engine, s), 30)
    rows = await deliveries(engine, key)
    deadline = delivery.send_deadline_s(s)
    assert {c: (d.status.value, d.last_error) for c, d in rows.items()} == {
        "email": ("pending", f"SMTP session took over {deadline:g} s"),
        "webhook": ("pending", f"webhook took over {deadline:g} s"),
    }
