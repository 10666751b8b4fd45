"""Events-out fixtures: a receiver on loopback built from the standard library only, as a
CommDesk service would write one, verifying each delivery with the snippet docs/api.md
publishes (read from the document itself, so the two cannot drift apart)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.config import Settings
from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.events import repository as repo
from commdesk_billing.modules.events.consumers import OutboundEvents
from commdesk_billing.modules.users import service as users
from commdesk_billing.queues.envelope import Envelope, new_envelope
from commdesk_billing.security.jwt import Role
from tests.conftest import auth

DOCS = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def docs_verifier() -> Callable[..., bool]:
    """`verify_signature` exactly as docs/api.md ("Verifying a delivery") shows it."""
    text = DOCS.read_text()
    section = text[text.index("**Verifying a delivery**") :]
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```", start)]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # noqa: S102 - our own document
    verify: Callable[..., bool] = namespace["verify_signature"]
    return verify


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """Answers each POST with the next of `answers` (then 200), after `delay_s`; verifies
    the signature with the docs' snippet and drops repeats by event id, as documented."""

    url: str = ""
    secret: str = ""
    answers: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    handled: list[dict[str, Any]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.received]


def _handler(state: Receiver, verify: Callable[..., bool]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(state.secret, self.headers.get("CommDesk-Signature", ""), body)
            state.received.append(Received(dict(self.headers.items()), body, ok))
            if state.delay_s:
                time.sleep(state.delay_s)
            status = state.answers.pop(0) if state.answers else 200
            if not ok:
                status = 400
            elif 200 <= status < 300:
                event = json.loads(body)
                if event["id"] not in state.seen:  # a repeat is answered 200, not handled
                    state.seen.add(event["id"])
                    state.handled.append(event)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


@pytest.fixture
def make_receiver() -> Iterator[Callable[[], Receiver]]:
    servers: list[ThreadingHTTPServer] = []
    verify = docs_verifier()

    def make() -> Receiver:
        state = Receiver()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, verify))
        server.daemon_threads = True
        server.block_on_close = False
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
        return state

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def wsettings(settings: Settings) -> Settings:
    """Short timeouts, and the retry figures the tests assert."""
    return settings.model_copy(
        update={
            "webhook_timeout_s": 2.0,
            "webhook_retry_base_s": 30.0,
            "webhook_retry_max_s": 3600.0,
            "webhook_retry_window_s": 3 * 86400.0,
            "webhook_disable_after_s": 86400.0,
        }
    )


class Endpoints:
    """Registers endpoints through the API (as finance_admin); deletes them at the end, so
    no other test's events are delivered to them."""

    def __init__(self, client: httpx.AsyncClient, token: Callable[..., str]) -> None:
        self.client, self.token = client, token
        self.made: list[uuid.UUID] = []

    def headers(self, request_id: str | None = None, key: str | None = None) -> dict[str, str]:
        """finance_admin's headers, with an Idempotency-Key (a fresh one unless given)."""
        h = auth(self.token(Role.finance_admin, sub="fin-webhooks"), key or uuid.uuid4().hex)
        if request_id:
            h["X-Request-Id"] = request_id
        return h

    async def create(self, receiver: Receiver, event_types: list[str] | None = None) -> Any:
        r = await self.client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "description": "test", "event_types": event_types or []},
            headers=self.headers(),
        )
        assert r.status_code == 201, r.text
        made = r.json()
        self.made.append(uuid.UUID(made["id"]))
        receiver.secret = made["secret"]
        return made


@pytest.fixture
async def endpoints(
    client: httpx.AsyncClient, token: Callable[..., str], engine: AsyncEngine
) -> AsyncIterator[Endpoints]:
    made = Endpoints(client, token)
    try:
        yield made
    finally:
        for endpoint_id in made.made:
            await in_transaction(engine, lambda c, i=endpoint_id: repo.delete_endpoint(c, i))


async def consume(engine: AsyncEngine, settings: Settings, envelope: Envelope) -> None:
    """The `webhooks.outbound` consumer, as the worker runs it (in its transaction)."""
    await in_transaction(engine, lambda c: OutboundEvents(settings)(c, envelope))


async def member(engine: AsyncEngine) -> tuple[uuid.UUID, str]:
    sub = f"evt-{uuid.uuid4().hex[:12]}"
    return await in_transaction(engine, lambda c: users.ensure_user(c, sub)), sub


def credited(user_id: uuid.UUID) -> Envelope:
    """`payment.credited` as payments/crediting.py announces it."""
    return new_envelope(
        "payment.credited",
        {
            "payment_id": str(uuid.uuid4()),
            "order_id": f"ord_{uuid.uuid4().hex[:12]}",
            "user_id": str(user_id),
            "wallet_id": str(uuid.uuid4()),
            "amount_paise": 35400,
            "taxable_paise": 30000,
            "gst_amount_paise": 5400,
            "credits": 3200,
            "pack_code": "pack_300",
            "kind": "pack",
            "channel": "order",
        },
    )


def refunded(user_id: uuid.UUID) -> Envelope:
    """`refund.succeeded` as refunds/processing.py announces it."""
    return new_envelope(
        "refund.succeeded",
        {
            "refund_id": str(uuid.uuid4()),
            "payment_id": str(uuid.uuid4()),
            "user_id": str(user_id),
            "amount_paise": 11800,
            "credits": 1000,
        },
    )
