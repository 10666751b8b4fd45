"""What settlements ask of payees: who can be paid now, and where. One statement each, read
in the settlement's own transaction (the payee's row is locked by `lock_target`, so a
settlement and a change of account never interleave)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.modules.payees.model import (
    Payee,
    PayeeKind,
    PayeeStatus,
    PayoutMethod,
    PayoutTarget,
)

_TARGET = """
    SELECT p.id, p.kind, p.subject_id, p.display_name, p.status, p.created_by, p.created_at,
           p.updated_at, a.id AS account_id, a.version AS account_version, a.method,
           a.account_mask, a.beneficiary_id
    FROM payees p
    JOIN payout_accounts a ON a.payee_id = p.id AND a.superseded_at IS NULL
    WHERE p.status = 'active'
      AND a.verification_status = 'verified'
      AND a.beneficiary_id IS NOT NULL
      AND a.payouts_blocked_until <= :at"""


def _target(row: Row[Any]) -> PayoutTarget:
    f = row._asdict()
    payee = Payee(
        id=f["id"],
        kind=PayeeKind(f["kind"]),
        subject_id=f["subject_id"],
        display_name=f["display_name"],
        status=PayeeStatus(f["status"]),
        created_by=f["created_by"],
        created_at=f["created_at"],
        updated_at=f["updated_at"],
    )
    return PayoutTarget(
        payee=payee,
        account_id=f["account_id"],
        account_version=f["account_version"],
        method=PayoutMethod(f["method"]),
        account_mask=f["account_mask"],
        beneficiary_id=f["beneficiary_id"],
    )


async def payable_now(conn: AsyncConnection, at: datetime) -> list[PayoutTarget]:
    """Every payee that could be paid at `at` (active, verified current account with a
    beneficiary, out of cooling-off), in a stable order."""
    rows = await conn.execute(sql(_TARGET + " ORDER BY p.id"), {"at": at})
    return [_target(r) for r in rows]


async def lock_target(
    conn: AsyncConnection, payee_id: uuid.UUID, at: datetime
) -> PayoutTarget | None:
    """The payee's target at `at`, its payee row locked for the rest of the transaction
    (settlements of one payee queue here; an account change takes the same lock), or None
    when it cannot be paid now."""
    await conn.execute(sql("SELECT 1 FROM payees WHERE id = :id FOR UPDATE"), {"id": payee_id})
    row = (await conn.execute(sql(_TARGET + " AND p.id = :id"), {"at": at, "id": payee_id})).first()
    return _target(row) if row is not None else None


async def is_active(conn: AsyncConnection, payee_id: uuid.UUID) -> bool:
    """Whether the payee may be paid out at all now (not suspended): asked before each
    transfer a settlement sends, since a settlement made before a suspension must not pay
    it. Not locked: a suspension committing during the transfer call is one just after."""
    status = await conn.scalar(sql("SELECT status FROM payees WHERE id = :id"), {"id": payee_id})
    return bool(status == PayeeStatus.active.value)


async def payable_code_of(conn: AsyncConnection, payee_id: uuid.UUID) -> str | None:
    """The payee's payable account code (whatever its status), or None if there is no such
    payee: what settlements ask CommDesk's directory about before locking the payee."""
    row = (
        await conn.execute(
            sql("SELECT kind, subject_id FROM payees WHERE id = :id"), {"id": payee_id}
        )
    ).first()
    return f"{PayeeKind(row.kind).value}:{row.subject_id}:payable" if row is not None else None
