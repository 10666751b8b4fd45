"""consumeCredits, one at a time or many in one transaction.

A single debit is a batch of one, so both paths are the same code. A batch (the queue
consumer's path, and the benchmark's) locks its wallets in id order with one statement,
reads every lot it needs and every replayed key with one more, and writes everything with a
third: three round trips however many debits it carries. Each debit still gets its own
outcome: a refused one does not spoil the others.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    DomainError,
    IdempotencyMismatch,
    InsufficientCredits,
    NotFound,
)
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.wallet import recognition, triggers, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import (
    OperationResult,
    check_credits,
    now,
    replay,
)
from commdesk_billing.modules.wallet.fifo import LotBalance
from commdesk_billing.modules.wallet.model import TxnType, Wallet


@dataclass(frozen=True)
class Debit:
    wallet_id: uuid.UUID
    credits: int
    idempotency_key: str
    reason: str
    source_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DebitOutcome:
    debit: Debit
    result: OperationResult | None = None
    error: DomainError | None = None


async def consume_credits_many(
    conn: AsyncConnection, debits: Sequence[Debit]
) -> list[DebitOutcome]:
    """Apply `debits` in order within the caller's transaction; one outcome per debit."""
    outcomes, valid = checked(debits)
    wallets = {w.id: w for w in await repo.lock_wallets(conn, [d.wallet_id for _, d in valid])}
    needs = needs_of(valid, wallets, outcomes)
    lots, done = await repo.fifo_lots(conn, needs, [d.idempotency_key for _, d in valid])
    batch = await plan(conn, valid, outcomes, wallets, lots, done)
    await batch.flush(conn)
    await after_debits(conn, wallets, batch)
    return [outcomes[i] for i in range(len(debits))]


# The steps of `consume_credits_many`, for a caller that runs its statements its own way
# (the debit route's batches put other parts into the same statements: http_debits.py).


def checked(debits: Sequence[Debit]) -> tuple[dict[int, DebitOutcome], list[tuple[int, Debit]]]:
    """Outcomes of the debits refused on their amount alone, and the others by index."""
    outcomes: dict[int, DebitOutcome] = {}
    valid: list[tuple[int, Debit]] = []
    for i, d in enumerate(debits):
        try:
            check_credits(d.credits)
            valid.append((i, d))
        except DomainError as exc:
            outcomes[i] = DebitOutcome(d, error=exc)
    return outcomes, valid


def needs_of(
    valid: list[tuple[int, Debit]],
    wallets: dict[uuid.UUID, Wallet],
    outcomes: dict[int, DebitOutcome],
) -> dict[uuid.UUID, int]:
    """Credits asked of each locked wallet; a debit of a wallet that does not exist gets its
    outcome (not found) here."""
    needs: dict[uuid.UUID, int] = {}
    for i, d in valid:
        if d.wallet_id not in wallets:
            outcomes[i] = DebitOutcome(d, error=NotFound(f"wallet {d.wallet_id} does not exist"))
        else:
            needs[d.wallet_id] = needs.get(d.wallet_id, 0) + d.credits
    return needs


async def plan(
    conn: AsyncConnection,
    valid: list[tuple[int, Debit]],
    outcomes: dict[int, DebitOutcome],
    wallets: dict[uuid.UUID, Wallet],
    lots: dict[uuid.UUID, list[LotBalance]],
    done: set[str],
) -> writer.OperationBatch:
    """Each debit without an outcome yet, in order, against the wallets' running state: its
    outcome (a result, a replay of an earlier one, or an error), and the batch that writes
    them. `conn` is only used to read an earlier operation's line (a replay)."""
    balances: dict[uuid.UUID, list[LotBalance]] = dict(lots)
    batch = writer.OperationBatch(list(wallets.values()))
    planned: dict[str, int] = {}  # key -> index of the debit that carries it in this batch
    for i, d in valid:
        if i in outcomes:
            continue
        if d.idempotency_key in done:
            try:
                earlier = await replay(
                    conn, wallets[d.wallet_id], d.idempotency_key, TxnType.debit, d.credits
                )
                outcomes[i] = DebitOutcome(d, result=earlier)
            except DomainError as exc:
                outcomes[i] = DebitOutcome(d, error=exc)
            continue
        if d.idempotency_key in planned:
            outcomes[i] = _duplicate_in_batch(d, outcomes.get(planned[d.idempotency_key]))
            continue
        wallet = batch.wallet(d.wallet_id)
        if wallet.available_credits < d.credits:
            outcomes[i] = DebitOutcome(
                d,
                error=InsufficientCredits(
                    f"wallet has {wallet.available_credits} available credits, {d.credits} "
                    "requested",
                    available_credits=wallet.available_credits,
                    requested_credits=d.credits,
                ),
            )
            continue
        # Later debits of the batch draw on what the earlier ones left (credits and basis).
        drawn, balances[d.wallet_id] = recognition.draw(balances[d.wallet_id], d.credits)
        at = now()
        journal = postings.platform_debit(
            operation_key=d.idempotency_key,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            credits=d.credits,
            at=at,
            reason=d.reason,
            basis_paise=recognition.basis_of(drawn),
        )
        after, line = batch.add(
            d.wallet_id,
            writer.WalletOperation(
                journal=journal,
                txn_type=TxnType.debit,
                credits=d.credits,
                idempotency_key=d.idempotency_key,
                source=d.reason,
                source_id=d.source_id,
                metadata=d.metadata,
                now=at,
                available_delta=-d.credits,
                lot_changes=[(x.lot_id, -x.credits, 0) for x in drawn],
                lot_basis=[(x.lot_id, x.basis_paise, 0) for x in drawn if x.basis_paise],
            ),
        )
        planned[d.idempotency_key] = i
        outcomes[i] = DebitOutcome(d, result=OperationResult(after, line, replayed=False))
    return batch


async def after_debits(
    conn: AsyncConnection, wallets: dict[uuid.UUID, Wallet], batch: writer.OperationBatch
) -> None:
    """Once per wallet, from where the batch found it to where it left it: fifty debits
    that cross the low-balance level together cross it once."""
    for wallet_id, before in wallets.items():
        await triggers.after_debit(conn, before, batch.wallet(wallet_id))


def _duplicate_in_batch(d: Debit, first: DebitOutcome | None) -> DebitOutcome:
    """The same key twice in one batch: the second is a replay of the first."""
    assert first is not None and first.result is not None
    same = first.debit
    if (same.wallet_id, same.credits) != (d.wallet_id, d.credits):
        return DebitOutcome(
            d, error=IdempotencyMismatch("idempotency key was already used for a different debit")
        )
    return DebitOutcome(
        d, result=OperationResult(first.result.wallet, first.result.line, replayed=True)
    )


async def consume_credits(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    credits: int,
    idempotency_key: str,
    reason: str,
    source_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> OperationResult:
    """Spend available credits, drawing lots FIFO. Never goes below zero."""
    debit = Debit(wallet_id, credits, idempotency_key, reason, source_id, metadata or {})
    (outcome,) = await consume_credits_many(conn, [debit])
    if outcome.error is not None:
        raise outcome.error
    assert outcome.result is not None
    return outcome.result
