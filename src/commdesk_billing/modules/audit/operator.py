"""An operator's action on something outside PostgreSQL (RabbitMQ's dead letters), audited.

No transaction spans the broker and the database, so the entry's transaction is opened
first — connected, so a database that cannot take the entry stops the action before it
happens — the action runs inside it once (a retried transaction does not act twice), and
the entry, with what the action found and left, commits right after it. What is left
open: the action done and the commit lost (the database gone in that instant); the
runbook's "Reading the audit log" says how to tell (the broker's own count moved, no entry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commdesk_billing.db.engine import in_transaction
from commdesk_billing.modules.audit import service
from commdesk_billing.security.jwt import Principal

T = TypeVar("T")


@dataclass(frozen=True)
class Acted(Generic[T]):
    """What the action returned, and what the entry says of it."""

    result: T
    before: Any = None
    after: Any = None
    details: dict[str, Any] = field(default_factory=dict)


async def audited(
    engine: AsyncEngine,
    *,
    action: str,
    target_type: str,
    target_id: str,
    act: Callable[[], Awaitable[Acted[T]]],
    principal: Principal | None = None,
) -> T:
    """Run `act` and record it, as `principal` (a staff member in the finance console) or,
    without one, as the bound origin's actor (`security/origin.operator`)."""
    done: list[Acted[T]] = []

    async def work(conn: AsyncConnection) -> T:
        if not done:
            done.append(await act())
        acted = done[0]
        await service.record(
            conn,
            principal,
            action=action,
            target_type=target_type,
            target_id=target_id,
            details=acted.details,
            before=acted.before,
            after=acted.after,
        )
        return acted.result

    return await in_transaction(engine, work)
