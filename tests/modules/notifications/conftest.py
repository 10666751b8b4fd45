"""Notification fixtures: a real SMTP server (aiosmtpd, `commdesk_billing.mailsink`) and a
real HTTP receiver standing in for CommDesk's notification service, both on loopback."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.mailsink import MailSink
from commdesk_billing.modules.notifications import service
from commdesk_billing.modules.notifications.model import Delivery
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues.envelope import Envelope, new_envelope
from tests.harness.servers import serving

WEBHOOK_SECRET = "notify-test-secret-0123456789abcdef"


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answer: int = 200


@pytest.fixture
async def sink() -> AsyncIterator[MailSink]:
    async with MailSink() as s:
        yield s


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def notify(request: Request) -> JSONResponse:
        state.requests.append((dict(request.headers), await request.body()))
        return JSONResponse({"id": f"cn_{len(state.requests)}"}, status_code=state.answer)

    app = Starlette(routes=[Route("/notify", notify, methods=["POST"])])
    async with serving(app) as url:
        state.url = f"{url}/notify"
        yield state


@pytest.fixture
def nsettings(settings: Settings, sink: MailSink, receiver: Receiver) -> Settings:
    """Billing pointed at the test's SMTP server and receiver."""
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port,
            "smtp_starttls": False,
            "smtp_from": "CommDesk Billing <billing@example.test>",
            "smtp_timeout_s": 5.0,
            "notify_webhook_url": receiver.url,
            "notify_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "notification_retry_base_s": 30.0,
            "notification_max_attempts": 3,
        }
    )


async def make_user(engine: AsyncEngine, email: str | None) -> uuid.UUID:
    sub = f"notify-{uuid.uuid4().hex}"
    return await in_transaction(engine, lambda c: users.ensure_user(c, sub, email=email))


async def consume(engine: AsyncEngine, envelope: Envelope) -> str:
    """What the consumer does with one message, in a transaction as the runtime runs it."""

    async def work(conn: AsyncConnection) -> str:
        return await service.record(conn, envelope)

    return await in_transaction(engine, work)


async def deliveries(engine: AsyncEngine, key: str) -> dict[str, Delivery]:
    async with engine.connect() as conn:
        return {d.channel.value: d for d in await service.deliveries(conn, key)}


def event(kind: str, payload: dict[str, Any]) -> Envelope:
    return new_envelope(kind, payload)
