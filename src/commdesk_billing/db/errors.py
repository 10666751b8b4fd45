"""The database could not serve a transaction now: overload or refusal, not a bug.

Classified by exception class and SQLSTATE, never by message text, into a few bounded
reasons. The API answers each with 503 and `Retry-After` (`problems.py`), a consumer's
message goes to a retry tier, and `in_transaction` never runs such a transaction again
itself: each has already cost its timeout, and repeating it in place would turn a short
overload into a long hang (and add load to a database that is refusing it).

- `pool_timeout`: `sqlalchemy.exc.TimeoutError`, no pool connection free within
  `BILLING_DB_POOL_TIMEOUT_S`;
- `statement_timeout`: asyncpg `QueryCanceledError` (57014, the server's
  `statement_timeout`), or the bare `TimeoutError` of asyncpg's client-side timeout
  (`BILLING_DB_STATEMENT_TIMEOUT_MS`), named in the engine's error hook (`install`);
- `too_many_connections`: asyncpg `TooManyConnectionsError` (53300): "too many clients
  already", a role's or a database's connection limit;
- `cannot_connect_now`: asyncpg `CannotConnectNowError` (57P03): starting up, shutting
  down, in recovery;
- `connect_error`: an `OSError` while connecting (refused, unreachable, unknown host), or
  SQLSTATE class 08 at connect (a pooler refusing the client);
- `connect_timeout`: a `TimeoutError` while connecting (`BILLING_DB_CONNECT_TIMEOUT_S`).

Not here on purpose: authentication or "no such database" (a misconfiguration: a 500 and
an operator), serialization failures and deadlocks (`in_transaction` runs those again), and
connections lost mid-transaction (also run again; a reconnect that then fails lands here).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import asyncpg
import structlog
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from commdesk_billing.telemetry.metrics import DB_UNAVAILABLE

log = structlog.get_logger(__name__)

Reason = Literal[
    "pool_timeout",
    "statement_timeout",
    "too_many_connections",
    "cannot_connect_now",
    "connect_error",
    "connect_timeout",
]
REASONS: tuple[Reason, ...] = (
    "pool_timeout",
    "statement_timeout",
    "too_many_connections",
    "cannot_connect_now",
    "connect_error",
    "connect_timeout",
)

# Seconds a client should wait before repeating: a pool frees up in milliseconds to seconds,
# a server that refuses connections (restart, failover, a full connection table) in seconds.
RETRY_AFTER_S: dict[Reason, int] = {
    "pool_timeout": 1,
    "statement_timeout": 2,
    "too_many_connections": 2,
    "cannot_connect_now": 5,
    "connect_error": 5,
    "connect_timeout": 5,
}

# By class first (asyncpg has one per SQLSTATE); the SQLSTATE attribute covers a driver or
# wrapper that carries the code without asyncpg's class.
_CLASSES: tuple[tuple[type[BaseException], Reason], ...] = (
    (sa_exc.TimeoutError, "pool_timeout"),
    (asyncpg.exceptions.QueryCanceledError, "statement_timeout"),
    (asyncpg.exceptions.TooManyConnectionsError, "too_many_connections"),
    (asyncpg.exceptions.CannotConnectNowError, "cannot_connect_now"),
)
_SQLSTATES: dict[str, Reason] = {
    "57014": "statement_timeout",
    "53300": "too_many_connections",
    "57P03": "cannot_connect_now",
}


class DatabaseUnavailable(Exception):
    """The transaction was given up for `reason`; nothing of it committed, except that a
    `statement_timeout` at COMMIT leaves the outcome unknown (which is why every unit of work
    is idempotent by a key). Deliberately not a `DomainError`: it is no answer to record under
    an Idempotency-Key and no reason to dead-letter a message."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"database unavailable: {reason}")
        self.reason: Reason = reason
        self.reported = False

    @property
    def retry_after_s(self) -> int:
        return RETRY_AFTER_S[self.reason]


def _links(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps: SQLAlchemy's `.orig`, then each `__cause__`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 16:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


def _sqlstate(link: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(link, attr, None)
        if isinstance(code, str):
            return code
    return None


def _decide(exc: BaseException, connecting: bool) -> tuple[Reason, BaseException] | None:
    links = list(_links(exc))
    for link in links:
        if isinstance(link, DatabaseUnavailable):
            return link.reason, link.__cause__ or link
        for cls, reason in _CLASSES:
            if isinstance(link, cls):
                return reason, link
    for link in links:
        code = _sqlstate(link)
        if code in _SQLSTATES:
            return _SQLSTATES[code], link
        if connecting and code is not None and code.startswith("08"):
            return "connect_error", link
    if connecting:
        for link in links:
            # TimeoutError is an OSError: ask for it first.
            if isinstance(link, TimeoutError):
                return "connect_timeout", link
            if isinstance(link, OSError):
                return "connect_error", link
    return None


def classify(exc: BaseException, *, connecting: bool = False) -> Reason | None:
    """Why the database could not serve this, or None if `exc` is something else.

    `connecting`: `exc` was raised while a connection was being acquired, before any
    statement ran; only then are a bare `OSError` or `TimeoutError` (which asyncpg raises
    unwrapped from its connect) the database's, and not, say, a gateway call's."""
    decided = _decide(exc, connecting)
    return decided[0] if decided else None


def report(exc: BaseException, reason: Reason, **fields: object) -> DatabaseUnavailable:
    """The `DatabaseUnavailable` for `exc`, logged (`db.unavailable`) and counted
    (`billing_db_unavailable_total{reason}`) once, however many layers see it."""
    unavailable = exc if isinstance(exc, DatabaseUnavailable) else DatabaseUnavailable(reason)
    if not unavailable.reported:
        unavailable.reported = True
        DB_UNAVAILABLE.labels(unavailable.reason).inc()
        decided = _decide(exc, connecting=True)
        error = decided[1] if decided else exc
        log.warning(
            "db.unavailable",
            reason=unavailable.reason,
            error=f"{type(error).__module__}.{type(error).__qualname__}",
            sqlstate=next((c for c in map(_sqlstate, _links(exc)) if c), None),
            **fields,
        )
    return unavailable


def _driver_timeout(ctx: ExceptionContext) -> BaseException | None:
    # asyncpg's client-side `command_timeout` surfaces as a bare TimeoutError from inside the
    # driver (SQLAlchemy does not wrap it). Seen here, in the engine's own error hook, it can
    # only be that timeout: name it, so nobody has to guess what a TimeoutError meant.
    # Not while connecting (no connection yet): that TimeoutError is the connect timeout,
    # which `classify` names `connect_timeout`.
    if (
        isinstance(ctx.original_exception, TimeoutError)
        and not ctx.is_pre_ping
        and ctx.connection is not None
    ):
        return DatabaseUnavailable("statement_timeout")
    return None


def install(engine: AsyncEngine) -> None:
    """Hook `engine` so that the driver's statement timeout raises `DatabaseUnavailable`."""
    event.listen(engine.sync_engine, "handle_error", _driver_timeout)
