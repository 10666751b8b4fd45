"""Consumption whose journal another module writes: spending in a community, and giving
those credits back when the spend is reversed (DESIGN §10).

The wallet does what only it may do — lock the row, draw lots FIFO with their basis, write
the statement line, lots and movements — and asks the caller's `posting` for the journal,
given what was drawn. So the community module decides where the credits and the basis go
(its earnings, the platform's fee, the payable) without touching wallet tables, and the
wallet never learns what a community is.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import InsufficientCredits, InvalidAmount, NotFound
from commdesk_billing.modules.ledger.model import Journal
from commdesk_billing.modules.wallet import available, recognition, triggers, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import (
    OperationResult,
    check_credits,
    lock,
    new_lot,
    now,
    replay,
)
from commdesk_billing.modules.wallet.model import Lot, LotSource, TxnType
from commdesk_billing.modules.wallet.recognition import Draw

# The journal for a consumption, from what it drew (lots, credits, basis) and when.
SpendPosting = Callable[[Sequence[Draw], datetime], Journal]
# The caller's own row for the consumption, written in the same statement as the wallet's:
# from the journal and the statement line it belongs to, (SQL, parameters).
SpendRow = Callable[[Journal, uuid.UUID], tuple[str, dict[str, Any]]]
# The journal for credits given back, from the new lot and when.
RestorePosting = Callable[[Lot, datetime], Journal]


async def spend(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    credits: int,
    idempotency_key: str,
    reason: str,
    posting: SpendPosting,
    row: SpendRow | None = None,
    source_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[OperationResult, list[Draw]]:
    """Spend available credits (FIFO) under a journal the caller builds from the draw, and
    the caller's `row` with it. Only this wallet's row is locked. Three round trips, as a
    platform debit: the lock, the lots (and whether the key ran before), the write. A
    replay returns the earlier line and no draws."""
    check_credits(credits)
    found = await repo.lock_wallets(conn, [wallet_id])
    if not found:
        raise NotFound(f"wallet {wallet_id} does not exist")
    wallet = found[0]
    txn = TxnType.community_spend
    lots, done = await repo.fifo_lots(conn, {wallet.id: credits}, [idempotency_key])
    if idempotency_key in done:
        earlier = await replay(conn, wallet, idempotency_key, txn, credits)
        assert earlier is not None
        return earlier, []
    if wallet.available_credits < credits:
        raise InsufficientCredits(
            f"wallet has {wallet.available_credits} available credits, {credits} requested",
            available_credits=wallet.available_credits,
            requested_credits=credits,
        )
    drawn, _ = recognition.draw(lots[wallet.id], credits)
    at = now()
    journal = posting(drawn, at)
    line_id = uuid.uuid4()
    op = writer.WalletOperation(
        journal=journal,
        line_id=line_id,
        also=[row(journal, line_id)] if row is not None else [],
        txn_type=txn,
        credits=credits,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=source_id,
        metadata=metadata or {},
        now=at,
        available_delta=-credits,
        lot_changes=[(d.lot_id, -d.credits, 0) for d in drawn],
        # The basis leaves deferred revenue (for the fee and the payable): recognized.
        lot_basis=[(d.lot_id, d.basis_paise, 0) for d in drawn if d.basis_paise],
    )
    after, line = await writer.apply_operation(conn, wallet, op)
    await triggers.after_debit(conn, wallet, after)
    return OperationResult(wallet=after, line=line, replayed=False), drawn


async def restore(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    credits: int,
    basis_paise: int,
    expires_at: datetime | None,
    idempotency_key: str,
    reason: str,
    posting: RestorePosting,
    source_ref: str,
    metadata: dict[str, Any] | None = None,
) -> OperationResult:
    """Give `credits` back as a new lot that keeps the `basis_paise` they were spent with
    (so deferred revenue takes it back, and later consumption recognizes it again). Such a
    lot has no payment behind it: it is spent like any other, but never refunded in cash."""
    check_credits(credits)
    if basis_paise < 0:
        raise InvalidAmount("basis cannot be negative")
    wallet = await lock(conn, wallet_id)
    txn = TxnType.community_spend_reversal
    if (done := await replay(conn, wallet, idempotency_key, txn, credits)) is not None:
        return done
    at = now()
    lot = new_lot(
        wallet,
        source=LotSource.spend_reversal,
        credits=credits,
        # No payment: paid is the basis (there is no GST to give back on it here).
        paid_paise=basis_paise,
        taxable_paise=basis_paise,
        source_ref=source_ref,
        at=at,
        expires_at=expires_at,
    )
    op = writer.WalletOperation(
        journal=posting(lot, at),
        txn_type=txn,
        credits=credits,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=source_ref,
        metadata=metadata or {},
        now=at,
        available_delta=credits,
        new_lot=lot,
        lot_id=lot.id,
    )
    wallet, line = await writer.apply_operation(conn, wallet, op)
    await available.announce(
        conn, wallet_id=wallet.id, credits=credits, cause=f"spend-reversal:{line.id}"
    )
    return OperationResult(wallet=wallet, line=line, replayed=False)


async def drawn_by(conn: AsyncConnection, line_id: uuid.UUID) -> list[tuple[Lot, int, int]]:
    """The lots a statement line drew from: (lot, credits, basis), for a reversal."""
    return await repo.draws_of_line(conn, line_id)


async def available_account_of(conn: AsyncConnection, wallet_id: uuid.UUID) -> uuid.UUID:
    wallet = await repo.get_wallet(conn, wallet_id)
    if wallet is None:
        raise ValueError(f"wallet {wallet_id} does not exist")
    return wallet.available_account_id
