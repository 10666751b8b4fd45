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
from commdesk_billing.modules.notifications import jobs
from commdesk_billing.modules.notifications.jobs import deliver_due
from tests.harness.servers import serving
from tests.modules.notifications.conftest import WEBHOOK_SECRET, consume, deliveries, event
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
