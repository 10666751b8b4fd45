"""What every wallet operation shares: result type, amount checks, the lock, replays."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import IdempotencyMismatch, InvalidAmount, NotFound
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.model import (
    Hold,
    HoldStatus,
    Lot,
    LotSource,
    StatementLine,
    TxnType,
    Wallet,
)

# Far above any real operation, far below where bigint sums could overflow.
MAX_CREDITS = 10**13


@dataclass(frozen=True)
class OperationResult:
    wallet: Wallet
    line: StatementLine
    replayed: bool
    hold: Hold | None = None


def now() -> datetime:
    return datetime.now(UTC)


def check_credits(credits: int) -> None:
    if isinstance(credits, bool) or not isinstance(credits, int):
        raise InvalidAmount("credits must be an integer")
    if not 1 <= credits <= MAX_CREDITS:
        raise InvalidAmount(f"credits must be between 1 and {MAX_CREDITS}")


async def lock(conn: AsyncConnection, wallet_id: uuid.UUID) -> Wallet:
    wallet = await repo.get_wallet(conn, wallet_id, lock=True)
    if wallet is None:
        raise NotFound(f"wallet {wallet_id} does not exist")
    return wallet


async def replay(
    conn: AsyncConnection, wallet: Wallet, key: str, txn_type: TxnType, credits: int | None
) -> OperationResult | None:
    """The earlier result for `key`, if this operation already ran.

    Called after the wallet lock is held, so a concurrent duplicate has either committed
    (and is seen here) or not started its write (and will see ours).
    """
    line = await repo.find_line(conn, key)
    if line is None:
        return None
    return await replayed(conn, wallet, line, txn_type, credits)


async def replayed(
    conn: AsyncConnection,
    wallet: Wallet,
    line: StatementLine,
    txn_type: TxnType,
    credits: int | None,
) -> OperationResult:
    """`replay` for a line already found under the operation's key: its result, or
    IdempotencyMismatch when the key was used for another operation."""
    if (
        line.wallet_id != wallet.id
        or line.transaction_type is not txn_type
        or (credits is not None and line.credits != credits)
    ):
        raise IdempotencyMismatch(
            f"idempotency key was already used for a different {line.transaction_type} operation"
        )
    hold = await repo.get_hold(conn, line.hold_id) if line.hold_id else None
    return OperationResult(wallet=wallet, line=line, replayed=True, hold=hold)


def new_lot(
    wallet: Wallet,
    *,
    source: LotSource,
    credits: int,
    paid_paise: int,
    taxable_paise: int,
    source_ref: str | None,
    at: datetime,
    expires_at: datetime | None,
) -> Lot:
    """A lot as a grant creates it: all its credits remaining, nothing refunded yet."""
    return Lot(
        id=uuid.uuid4(),
        wallet_id=wallet.id,
        source=source,
        credits_granted=credits,
        credits_remaining=credits,
        credits_refunded=0,
        paid_paise=paid_paise,
        taxable_paise=taxable_paise,
        source_ref=source_ref,
        granted_at=at,
        expires_at=expires_at,
    )


def new_hold(
    wallet: Wallet,
    *,
    credits: int,
    reason: str,
    idempotency_key: str,
    at: datetime,
    expires_at: datetime,
    created_by: str | None = None,
    purpose: str = "spend",
) -> Hold:
    """A hold as placing it creates it: active, nothing captured or released yet."""
    return Hold(
        id=uuid.uuid4(),
        wallet_id=wallet.id,
        credits=credits,
        captured_credits=0,
        released_credits=0,
        status=HoldStatus.active,
        reason=reason,
        idempotency_key=idempotency_key,
        expires_at=expires_at,
        created_at=at,
        closed_at=None,
        created_by=created_by,
        purpose=purpose,
    )
