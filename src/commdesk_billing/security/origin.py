"""Where the work in progress came from: an HTTP request (client address, user agent, request
id), an operator's command line, or a queue consumer. The audit log reads it
(`modules/audit/service.py`), so no route has to hand it down through every call.

Set once per unit of work: by `RecordOrigin` for each HTTP request, by the CLI for an
operator command (`operator`), by the consumer runtime for each message (`consumer`).
"""

from __future__ import annotations

import getpass
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from commdesk_billing.config import Settings
from commdesk_billing.security import addresses
from commdesk_billing.security.text import sane_header

Channel = Literal["http", "cli", "consumer", "job"]
# What the audit log keeps of a User-Agent: enough to tell clients apart, never a megabyte.
USER_AGENT_MAX = 512


@dataclass(frozen=True)
class Origin:
    channel: Channel
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    # Who acts when no token says so: `cli:<os user>`, `consumer:<queue>`.
    actor: str | None = None
    role: str | None = None


_current: ContextVar[Origin | None] = ContextVar("billing_origin", default=None)


def current() -> Origin | None:
    return _current.get()


@contextmanager
def bound(origin: Origin) -> Iterator[Origin]:
    """`origin` for the duration of the block (restored after, nested blocks included)."""
    token = _current.set(origin)
    try:
        yield origin
    finally:
        _current.reset(token)


def operator(command: str) -> Origin:
    """An operator's command: the actor is the OS account that ran it (who is at the
    keyboard is the machine's business; this is what the machine can tell us)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (a bare container)
        user = "unknown"
    return Origin(channel="cli", actor=f"cli:{user}", role="operator", request_id=command)


def consumer(queue: str, message_id: str) -> Origin:
    return Origin(
        channel="consumer", actor=f"consumer:{queue}", role="system", request_id=message_id
    )


def _valid_ip(value: str | None) -> str | None:
    """A canonical address, or None: the column is `inet`, and a forwarded header can carry
    anything (an unparseable value must not turn an audited action into a 500)."""
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def request_client_ip(scope: Scope) -> str | None:
    """The client's address of an HTTP request. The one place the audit log asks: swap the
    rule (trusted proxies, X-Forwarded-For) in `security/addresses.py`, not here."""
    return _valid_ip(addresses.client_ip(scope))


def _header(scope: Scope, name: bytes, max_length: int) -> str | None:
    values: list[bytes] = [v for k, v in scope.get("headers") or [] if k == name]
    if not values:
        return None
    return values[-1].decode("latin-1")[:max_length]


def user_agent_of(scope: Scope) -> str | None:
    raw = _header(scope, b"user-agent", max_length=USER_AGENT_MAX)
    # Kept as sent, cut to size; a value with control characters is nobody's user agent.
    return sane_header(raw, max_length=USER_AGENT_MAX)


class RecordOrigin:
    """Binds the request's origin for everything the request does. Runs inside `Observe`,
    whose request id (the caller's `X-Request-Id` when sane, else a fresh one) it reuses."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.get("state") or {}
        request_id = state.get("request_id") or sane_header(
            _header(scope, b"x-request-id", max_length=129)
        )
        origin = Origin(
            channel="http",
            ip=request_client_ip(scope),
            user_agent=user_agent_of(scope),
            request_id=request_id,
        )
        with bound(origin):
            await self.app(scope, receive, send)
