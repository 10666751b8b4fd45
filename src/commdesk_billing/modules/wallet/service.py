"""Wallet service: the seed's grantCredits, consumeCredits, lockCredits, captureHold,
releaseCredits and syncBalance. The seed's refundCredits is `wallet.refunds` (a refund holds
its purchase's credits first, then captures or releases them).

Every operation runs inside the caller's transaction (the route or consumer owns the
boundary and its retries, see `db.engine.in_transaction`) and is idempotent by its key:
replaying a key returns the first result and changes nothing.

Locking (DESIGN §8): an operation takes exactly one row lock, its wallet's
(`SELECT … FOR UPDATE`), before reading anything it will decide on. Lots, holds, the chain
head and the statement sequence of a wallet only change under that lock, so they need no
locks of their own. House accounts are never locked: their legs are plain inserts.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.db.sql import sql
from commdesk_billing.errors import (
    HoldExpired,
    HoldNotActive,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidAmount,
    NotFound,
)
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.users import service as users
from commdesk_billing.modules.wallet import available, recognition, triggers, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import (
    OperationResult,
    check_credits,
    lock,
    new_hold,
    new_lot,
    now,
    replay,
    replayed,
)
from commdesk_billing.modules.wallet.debits import consume_credits, consume_credits_many
from commdesk_billing.modules.wallet.model import (
    BalanceReport,
    Hold,
    HoldStatus,
    LotSource,
    StatementLine,
    TxnType,
    Wallet,
)

log = structlog.get_logger(__name__)

__all__ = ["OperationResult", "consume_credits", "consume_credits_many"]


async def lots_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID
) -> dict[str, tuple[uuid.UUID, int, int]]:
    """The purchase and bonus lots a payment granted: source -> (lot, drawable, granted)."""
    return await repo.lots_of_payment(conn, payment_id)


async def get_or_create_user_wallet(
    conn: AsyncConnection, external_id: str, *, email: str | None = None, name: str | None = None
) -> Wallet:
    user_id = await users.user_id_for(conn, external_id)
    if user_id is not None and (wallet := await repo.find_owned_wallet(conn, "user", user_id)):
        return wallet
    user_id = await users.ensure_user(conn, external_id, email=email, name=name)
    await repo.ensure_wallet(conn, "user", user_id)
    wallet = await repo.find_owned_wallet(conn, "user", user_id)
    if wallet is None:  # pragma: no cover - the rows were just written in this transaction
        raise RuntimeError("wallet vanished after creation")
    return wallet


async def get_wallet(conn: AsyncConnection, wallet_id: uuid.UUID, *, lock: bool = False) -> Wallet:
    """`lock` takes the wallet's row (FOR UPDATE): in id order, after any payment row."""
    wallet = await repo.get_wallet(conn, wallet_id, lock=lock)
    if wallet is None:
        raise NotFound(f"wallet {wallet_id} does not exist")
    return wallet


async def lock_wallets(conn: AsyncConnection, wallet_ids: Sequence[uuid.UUID]) -> list[Wallet]:
    """Row-lock several wallets in id order (the order every batch takes them in); a wallet
    that does not exist is left out. For a module that reads figures of its own under the
    wallets' locks before it debits them (usage metering)."""
    return await repo.lock_wallets(conn, wallet_ids)


@dataclass(frozen=True)
class Grant:
    """One lot to add (`grant_credits`' arguments, for `grant_credits_many`)."""

    credits: int
    source: LotSource
    idempotency_key: str
    reason: str
    paid_paise: int = 0
    taxable_paise: int = 0
    expires_at: datetime | None = None
    source_ref: str | None = None
    metadata: dict[str, Any] | None = None


def _check_grant(g: Grant) -> None:
    check_credits(g.credits)
    if g.paid_paise < 0 or not 0 <= g.taxable_paise <= g.paid_paise:
        raise InvalidAmount("paid and taxable paise must satisfy 0 <= taxable <= paid")
    if g.source is LotSource.promotional and g.paid_paise:
        raise InvalidAmount("promotional credits carry no cost basis")


def _grant_operation(wallet: Wallet, g: Grant) -> writer.WalletOperation:
    """The operation that adds `g`'s lot to the (locked) wallet."""
    at = now()
    lot = new_lot(
        wallet,
        source=g.source,
        credits=g.credits,
        paid_paise=g.paid_paise,
        taxable_paise=g.taxable_paise,
        source_ref=g.source_ref,
        at=at,
        expires_at=g.expires_at,
    )
    journal = postings.credit_grant(
        operation_key=g.idempotency_key,
        source=g.source.value,
        wallet_id=wallet.id,
        available_account_id=wallet.available_account_id,
        credits=g.credits,
        at=at,
        reason=g.reason,
    )
    return writer.WalletOperation(
        journal=journal,
        txn_type=TxnType(g.source.value),
        credits=g.credits,
        idempotency_key=g.idempotency_key,
        source=g.reason,
        source_id=g.source_ref,
        metadata=g.metadata or {},
        now=at,
        available_delta=g.credits,
        lifetime_purchased_delta=g.credits if g.source is LotSource.purchase else 0,
        new_lot=lot,
        lot_id=lot.id,
    )


async def grant_credits(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    credits: int,
    source: LotSource,
    idempotency_key: str,
    reason: str,
    paid_paise: int = 0,
    taxable_paise: int = 0,
    expires_at: datetime | None = None,
    source_ref: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> OperationResult:
    """Add credits as a new lot (purchase, bonus, promotional or refund reversal)."""
    g = Grant(
        credits=credits,
        source=source,
        idempotency_key=idempotency_key,
        reason=reason,
        paid_paise=paid_paise,
        taxable_paise=taxable_paise,
        expires_at=expires_at,
        source_ref=source_ref,
        metadata=metadata,
    )
    _check_grant(g)
    wallet = await lock(conn, wallet_id)
    done = await replay(conn, wallet, idempotency_key, TxnType(source.value), credits)
    if done is not None:
        return done
    wallet, line = await writer.apply_operation(conn, wallet, _grant_operation(wallet, g))
    # A grant outside a purchase's crediting (which announces `payment.credited` itself and
    # grants through `grant_credits_many`): a promotional grant, another service's message.
    await available.announce(conn, wallet_id=wallet.id, credits=credits, cause=f"grant:{line.id}")
    return OperationResult(wallet=wallet, line=line, replayed=False)


async def grant_credits_many(
    conn: AsyncConnection, wallet_id: uuid.UUID, grants: Sequence[Grant]
) -> list[OperationResult]:
    """Several lots added to one wallet, in order, as one `grant_credits` per grant would
    add them (each key replayed or refused the same way), in three statements whatever
    their number: the wallet's lock, the earlier lines of their keys, one batch written."""
    for g in grants:
        _check_grant(g)
    keys = [g.idempotency_key for g in grants]
    if len(set(keys)) != len(keys):
        raise ValueError("each grant has a key of its own")
    wallet = await lock(conn, wallet_id)
    earlier = {line.idempotency_key: line for line in await repo.lines_by_keys(conn, keys)}
    batch = writer.OperationBatch([wallet])
    results: list[OperationResult] = []
    for g in grants:
        found = earlier.get(g.idempotency_key)
        if found is not None:
            txn_type = TxnType(g.source.value)
            results.append(await replayed(conn, wallet, found, txn_type, g.credits))
            continue
        after, line = batch.add(wallet.id, _grant_operation(batch.wallet(wallet.id), g))
        results.append(OperationResult(wallet=after, line=line, replayed=False))
    if len(batch):
        await batch.flush(conn)
    return results


async def lock_credits(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    credits: int,
    idempotency_key: str,
    reason: str,
    ttl_s: int,
    metadata: dict[str, Any] | None = None,
    created_by: str | None = None,
) -> OperationResult:
    """Move credits from available to held until captured, released or expired.
    `created_by`: the caller placing it, who (with debit-scoped services) may settle it."""
    check_credits(credits)
    if ttl_s <= 0:
        raise InvalidAmount("a hold needs a positive time to live")
    wallet = await lock(conn, wallet_id)
    if done := await replay(conn, wallet, idempotency_key, TxnType.hold, credits):
        return done
    if wallet.available_credits < credits:
        raise InsufficientCredits(
            f"wallet has {wallet.available_credits} available credits, {credits} requested",
            available_credits=wallet.available_credits,
            requested_credits=credits,
        )
    at = now()
    hold = new_hold(
        wallet,
        credits=credits,
        reason=reason,
        idempotency_key=idempotency_key,
        at=at,
        expires_at=at + timedelta(seconds=ttl_s),
        created_by=created_by,
    )
    journal = postings.hold_placed(
        operation_key=idempotency_key,
        wallet_id=wallet.id,
        available_account_id=wallet.available_account_id,
        held_account_id=wallet.held_account_id,
        credits=credits,
        at=at,
        reason=reason,
    )
    op = writer.WalletOperation(
        journal=journal,
        txn_type=TxnType.hold,
        credits=credits,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=str(hold.id),
        metadata=metadata or {},
        now=at,
        available_delta=-credits,
        locked_delta=credits,
        new_hold=hold,
        hold_id=hold.id,
    )
    after, line = await writer.apply_operation(conn, wallet, op)
    # A hold is where a capture's credits leave `available`: the crossing is here.
    await triggers.after_debit(conn, wallet, after)
    return OperationResult(wallet=after, line=line, replayed=False, hold=hold)


async def _lock_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> tuple[Wallet, Hold]:
    found = await repo.get_hold(conn, hold_id)
    if found is None:
        raise NotFound(f"hold {hold_id} does not exist")
    wallet = await lock(conn, found.wallet_id)
    # Re-read under the wallet lock: the hold may have been closed while we waited.
    hold = await repo.get_hold(conn, hold_id)
    assert hold is not None
    return wallet, hold


def _not_a_refund(hold: Hold) -> None:
    # A refund's hold earmarks the very lots it refunds; capturing or releasing it anywhere
    # but in the refund flow would leave those lots reserved for ever.
    if hold.purpose != "spend":
        raise HoldNotActive(
            f"hold {hold.id} belongs to a refund or a fraud review and settles with it",
            hold_status=hold.status.value,
        )


async def capture_hold(
    conn: AsyncConnection,
    *,
    hold_id: uuid.UUID,
    idempotency_key: str,
    credits: int | None = None,
    reason: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> OperationResult:
    """Consume `credits` of a hold (all of it by default) and release the rest."""
    wallet, hold = await _lock_hold(conn, hold_id)
    _not_a_refund(hold)
    if done := await replay(conn, wallet, idempotency_key, TxnType.capture, None):
        if done.line.hold_id != hold.id:
            raise IdempotencyMismatch("idempotency key was already used for another hold")
        return done
    capture = hold.credits if credits is None else credits
    check_credits(capture)
    if hold.status is not HoldStatus.active:
        raise HoldNotActive(f"hold {hold.id} is {hold.status}", hold_status=hold.status.value)
    at = now()
    if hold.expires_at <= at:
        raise HoldExpired(f"hold {hold.id} expired at {hold.expires_at.isoformat()}")
    if capture > hold.credits:
        raise InvalidAmount(
            f"hold {hold.id} holds {hold.credits} credits, {capture} requested",
            hold_credits=hold.credits,
        )
    release = hold.credits - capture
    lots, _ = await repo.fifo_lots(conn, {wallet.id: capture}, [])
    drawn, _ = recognition.draw(lots[wallet.id], capture)
    journal = postings.hold_captured(
        operation_key=idempotency_key,
        wallet_id=wallet.id,
        available_account_id=wallet.available_account_id,
        held_account_id=wallet.held_account_id,
        held=hold.credits,
        captured=capture,
        at=at,
        reason=reason or hold.reason,
        basis_paise=recognition.basis_of(drawn),
    )
    op = writer.WalletOperation(
        journal=journal,
        txn_type=TxnType.capture,
        credits=capture,
        idempotency_key=idempotency_key,
        source=reason or hold.reason,
        source_id=str(hold.id),
        metadata={**(metadata or {}), "captured_credits": capture, "released_credits": release},
        now=at,
        available_delta=release,
        locked_delta=-hold.credits,
        lot_changes=[(x.lot_id, -x.credits, 0) for x in drawn],
        lot_basis=[(x.lot_id, x.basis_paise, 0) for x in drawn if x.basis_paise],
        close_hold=(hold.id, HoldStatus.captured, capture, release),
        hold_id=hold.id,
    )
    after, line = await writer.apply_operation(conn, wallet, op)
    # A capture only ever gives credits back to `available` (the part not captured), so
    # it cannot cross the level itself; it is told all the same, as every debit path is.
    await triggers.after_debit(conn, wallet, after)
    await triggers.after_credits_back(conn, after, release, cause=f"hold:{hold.id}:capture")
    wallet = after
    closed = await repo.get_hold(conn, hold.id)
    return OperationResult(wallet=wallet, line=line, replayed=False, hold=closed)


async def release_credits(
    conn: AsyncConnection,
    *,
    hold_id: uuid.UUID,
    idempotency_key: str,
    reason: str | None = None,
    expired: bool = False,
) -> OperationResult:
    """Return a hold's credits to available (voiding it). `expired` marks the scheduler's
    release of a hold nobody captured in time."""
    wallet, hold = await _lock_hold(conn, hold_id)
    _not_a_refund(hold)
    if done := await replay(conn, wallet, idempotency_key, TxnType.release, None):
        if done.line.hold_id != hold.id:
            raise IdempotencyMismatch("idempotency key was already used for another hold")
        return done
    if hold.status is not HoldStatus.active:
        raise HoldNotActive(f"hold {hold.id} is {hold.status}", hold_status=hold.status.value)
    at = now()
    status = HoldStatus.expired if expired else HoldStatus.released
    journal = postings.hold_released(
        operation_key=idempotency_key,
        wallet_id=wallet.id,
        available_account_id=wallet.available_account_id,
        held_account_id=wallet.held_account_id,
        credits=hold.credits,
        at=at,
        reason=reason or hold.reason,
        expired=expired,
    )
    op = writer.WalletOperation(
        journal=journal,
        txn_type=TxnType.release,
        credits=hold.credits,
        idempotency_key=idempotency_key,
        source=reason or hold.reason,
        source_id=str(hold.id),
        metadata={"expired": expired},
        now=at,
        available_delta=hold.credits,
        locked_delta=-hold.credits,
        close_hold=(hold.id, status, 0, hold.credits),
        hold_id=hold.id,
    )
    wallet, line = await writer.apply_operation(conn, wallet, op)
    await triggers.after_credits_back(conn, wallet, hold.credits, cause=f"hold:{hold.id}:release")
    closed = await repo.get_hold(conn, hold.id)
    return OperationResult(wallet=wallet, line=line, replayed=False, hold=closed)


async def sync_balance(conn: AsyncConnection, wallet_id: uuid.UUID) -> BalanceReport:
    """Recompute a wallet from its entries, lots, holds and statement; report any drift.

    One statement, so every figure comes from the same snapshot. It never writes: money
    that does not add up is for a person to investigate, not for code to paper over.
    """
    row = (
        await conn.execute(
            sql("""
        SELECT w.available_credits, w.locked_credits,
               (SELECT -coalesce(sum(amount), 0) FROM ledger_entries
                 WHERE account_id = w.available_account_id) AS ledger_available,
               (SELECT -coalesce(sum(amount), 0) FROM ledger_entries
                 WHERE account_id = w.held_account_id) AS ledger_locked,
               (SELECT coalesce(sum(credits_remaining), 0) FROM credit_lots
                 WHERE wallet_id = w.id) AS lots_remaining,
               (SELECT coalesce(sum(credits), 0) FROM wallet_holds
                 WHERE wallet_id = w.id AND status = 'active') AS active_holds,
               (SELECT balance_after FROM wallet_transactions
                 WHERE wallet_id = w.id ORDER BY seq DESC LIMIT 1) AS statement_balance
          FROM wallets w WHERE w.id = :id"""),
            {"id": wallet_id},
        )
    ).first()
    if row is None:
        raise NotFound(f"wallet {wallet_id} does not exist")
    report = BalanceReport(
        wallet_id=wallet_id,
        row_available=row.available_credits,
        row_locked=row.locked_credits,
        ledger_available=int(row.ledger_available),
        ledger_locked=int(row.ledger_locked),
        lots_remaining=int(row.lots_remaining),
        active_holds=int(row.active_holds),
        statement_balance=(None if row.statement_balance is None else int(row.statement_balance)),
    )
    if not report.consistent:
        log.error("wallet.balance.drift", wallet_id=str(wallet_id), drift=report.drift)
    return report


async def list_statement(
    conn: AsyncConnection, wallet_id: uuid.UUID, *, before_seq: int | None, limit: int
) -> list[StatementLine]:
    return await repo.list_lines(conn, wallet_id, before_seq=before_seq, limit=limit)


async def lines_of_payment(
    conn: AsyncConnection, payment_id: uuid.UUID, refund_ids: Sequence[uuid.UUID]
) -> list[StatementLine]:
    """The statement lines a payment and its refunds wrote, oldest first: the purchase and
    bonus grants (`payment:<id>:purchase|bonus`), each refund's hold, capture or release
    (`refund:<id>:hold|capture|release`). Found by their operation keys, which are unique."""
    keys = [f"payment:{payment_id}:purchase", f"payment:{payment_id}:bonus"]
    keys += [f"refund:{r}:{step}" for r in refund_ids for step in ("hold", "capture", "release")]
    return await repo.lines_by_keys(conn, keys)


async def get_hold(conn: AsyncConnection, hold_id: uuid.UUID) -> Hold:
    hold = await repo.get_hold(conn, hold_id)
    if hold is None:
        raise NotFound(f"hold {hold_id} does not exist")
    return hold


async def expirable_holds(conn: AsyncConnection, *, limit: int = 500) -> list[uuid.UUID]:
    return await repo.expired_hold_ids(conn, now(), limit)


# --- auto-recharge's columns (the autorecharge module keeps them through these) --------


async def configure_auto_recharge(
    conn: AsyncConnection,
    wallet_id: uuid.UUID,
    *,
    enabled: bool,
    threshold: int,
    trigger: int | None,
) -> Wallet:
    """The wallet's `auto_recharge_enabled`, `auto_recharge_threshold` and the effective
    level its debits compare against (`auto_recharge_trigger`, None when off)."""
    if threshold < 0 or (trigger is not None and trigger < 0):
        raise InvalidAmount("a threshold and a trigger level are never negative")
    wallet = await repo.set_auto_recharge(
        conn,
        wallet_id,
        enabled=enabled,
        threshold=threshold,
        trigger=trigger if enabled else None,
    )
    if wallet is None:
        raise NotFound(f"wallet {wallet_id} does not exist")
    return wallet


async def set_auto_recharge_triggers(
    conn: AsyncConnection, levels: list[tuple[uuid.UUID, int]]
) -> int:
    """New effective levels for wallets whose auto-recharge is on (others are left off)."""
    return await repo.set_auto_recharge_triggers(conn, levels)


async def add_pending_credits(conn: AsyncConnection, wallet_id: uuid.UUID, delta: int) -> None:
    """Credits a recharge in flight will bring (`delta` > 0), or no longer will (< 0)."""
    await repo.add_pending_credits(conn, wallet_id, delta)


async def debited_since(
    conn: AsyncConnection, wallet_ids: list[uuid.UUID], since: datetime
) -> dict[uuid.UUID, int]:
    """Credits each wallet consumed since `since` (its burn)."""
    return await repo.debited_since(conn, wallet_ids, since)
