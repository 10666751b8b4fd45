"""The wallet's side of a purchase refund: reserve, then capture or release.

A refund takes credits back from named lots (the purchase lot and its bonus lot), so its
hold is unlike a spend hold: it earmarks those lots (`credits_reserved`) as well as moving
the credits from available to held. While it is active no spend can draw the earmarked
credits (FIFO skips them) and nothing but the refund can settle it (no API call, no
expiry). Capture takes the credits back to issuance and marks the lots refunded; release
returns them to available and frees the lots.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import (
    HoldNotActive,
    IdempotencyMismatch,
    InsufficientCredits,
    InvalidAmount,
)
from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.ledger.model import Journal
from commdesk_billing.modules.wallet import available, writer
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import (
    OperationResult,
    check_credits,
    lock,
    new_hold,
    now,
    replay,
)
from commdesk_billing.modules.wallet.model import Hold, HoldStatus, Lot, LotSource, TxnType, Wallet

# (lot, credits taken from it)
Takes = Sequence[tuple[uuid.UUID, int]]

# A hold that earmarks lots (a refund's, a review's) never expires by itself; the date only
# satisfies the column. Settling it is the refund's job (the refunds sync job makes sure
# every refund ends) or the review's.
_LOT_HOLD_TTL = timedelta(days=3650)


async def _lots(conn: AsyncConnection, wallet: Wallet, takes: Takes) -> list[Lot]:
    lots = []
    for lot_id, credits in takes:
        check_credits(credits)
        lot = await repo.get_lot(conn, lot_id)
        if lot is None or lot.wallet_id != wallet.id:
            raise ValueError(f"lot {lot_id} is not a lot of wallet {wallet.id}")
        lots.append(lot)
    return lots


async def reserve_for_refund(
    conn: AsyncConnection,
    *,
    wallet_id: uuid.UUID,
    takes: Takes,
    idempotency_key: str,
    reason: str,
    refund_ref: str,
) -> OperationResult:
    """Hold `takes` credits for a refund. The caller has checked they are drawable (under
    this same wallet lock, which it took first); this re-checks and refuses otherwise."""
    wallet = await lock(conn, wallet_id)
    total = sum(c for _, c in takes)
    if done := await replay(conn, wallet, idempotency_key, TxnType.hold, total):
        return done
    lots = await _lots(conn, wallet, takes)
    if any(lot.source is LotSource.promotional for lot in lots):
        # No money came in for them, so none goes back (DESIGN §3). Refused here, when the
        # refund is asked for, never at capture: by then Cashfree has paid the money out.
        raise InvalidAmount("promotional credits are not refundable", refundable_credits=0)
    short = [lot.id for lot, (_, c) in zip(lots, takes, strict=True) if lot.drawable < c]
    if short or wallet.available_credits < total:
        raise InsufficientCredits(
            f"credits to refund are no longer available (lots {short})",
            available_credits=wallet.available_credits,
            requested_credits=total,
        )
    return await place_lot_hold(
        conn,
        wallet,
        takes=takes,
        purpose="refund",
        idempotency_key=idempotency_key,
        reason=reason,
        source_id=refund_ref,
        metadata={"refund": refund_ref, "lots": {str(i): c for i, c in takes}},
        journal=lambda at: postings.refund_hold_placed(
            operation_key=idempotency_key,
            refund_ref=refund_ref,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            held_account_id=wallet.held_account_id,
            credits=total,
            at=at,
            reason=reason,
        ),
    )


async def place_lot_hold(
    conn: AsyncConnection,
    wallet: Wallet,
    *,
    takes: Takes,
    purpose: str,
    idempotency_key: str,
    reason: str,
    source_id: str,
    metadata: dict[str, Any],
    journal: Callable[[datetime], Journal],
) -> OperationResult:
    """Place a hold of `takes` that earmarks them on their lots (`credits_reserved`) as well
    as moving their credits from available to held: a refund's, or a fraud review's (see
    `reviews`). The caller holds the wallet's lock and has checked the credits are there;
    `journal` writes the hold's journal at the given time."""
    total = sum(c for _, c in takes)
    at = now()
    hold = new_hold(
        wallet,
        credits=total,
        reason=reason,
        idempotency_key=idempotency_key,
        at=at,
        expires_at=at + _LOT_HOLD_TTL,
        purpose=purpose,
    )
    op = writer.WalletOperation(
        journal=journal(at),
        txn_type=TxnType.hold,
        credits=total,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=source_id,
        metadata=metadata,
        now=at,
        available_delta=-total,
        locked_delta=total,
        new_hold=hold,
        hold_id=hold.id,
        lot_reservations=[(lot_id, c) for lot_id, c in takes],
    )
    after, line = await writer.apply_operation(conn, wallet, op)
    return OperationResult(wallet=after, line=line, replayed=False, hold=hold)


async def locked_lot_hold(
    conn: AsyncConnection, hold_id: uuid.UUID, purpose: str
) -> tuple[Wallet, Hold]:
    """A hold of `purpose` ("refund", "review") and its wallet, locked; the hold re-read
    under the lock (it may have been closed while we waited)."""
    found = await repo.get_hold(conn, hold_id)
    if found is None or found.purpose != purpose:
        raise ValueError(f"hold {hold_id} is not a {purpose} hold")
    wallet = await lock(conn, found.wallet_id)
    hold = await repo.get_hold(conn, hold_id)
    assert hold is not None
    return wallet, hold


async def settled_already(
    conn: AsyncConnection, wallet: Wallet, hold: Hold, idempotency_key: str, txn_type: TxnType
) -> OperationResult | None:
    """The earlier result of settling `hold` under this key; None when it is still active
    and this key is new (settle it now)."""
    if done := await replay(conn, wallet, idempotency_key, txn_type, hold.credits):
        if done.line.hold_id != hold.id:
            raise IdempotencyMismatch("idempotency key was already used for another hold")
        return done
    if hold.status is not HoldStatus.active:
        raise HoldNotActive(f"hold {hold.id} is {hold.status}", hold_status=hold.status.value)
    return None


async def _refund_hold(
    conn: AsyncConnection, hold_id: uuid.UUID, takes: Takes
) -> tuple[Wallet, Hold]:
    wallet, hold = await locked_lot_hold(conn, hold_id, "refund")
    if sum(c for _, c in takes) != hold.credits:
        raise ValueError(f"refund hold {hold_id} holds {hold.credits} credits, not {takes}")
    return wallet, hold


async def capture_refund(
    conn: AsyncConnection,
    *,
    hold_id: uuid.UUID,
    takes: Takes,
    idempotency_key: str,
    reason: str,
    refund_ref: str,
    taxable_paise: int,
) -> OperationResult:
    """The refund succeeded: the held credits go back to issuance, the lots are refunded.
    `taxable_paise`, the refund's taxable value (what `refund.owed` takes out of deferred
    revenue), leaves the basis of the lot that carries one (the purchase lot)."""
    wallet, hold = await _refund_hold(conn, hold_id, takes)
    if done := await settled_already(conn, wallet, hold, idempotency_key, TxnType.refund):
        return done
    lots = await _lots(conn, wallet, takes)
    basis, residual = _basis_leaving(lots, takes, taxable_paise)
    at = now()
    op = writer.WalletOperation(
        # `_refund_hold` checked that the takes add up to what the hold holds.
        journal=postings.refund_hold_captured(
            operation_key=idempotency_key,
            refund_ref=refund_ref,
            wallet_id=wallet.id,
            held_account_id=wallet.held_account_id,
            returns=[(lot.source.value, c) for lot, (_, c) in zip(lots, takes, strict=True)],
            at=at,
            reason=reason,
            residual_paise=residual,
        ),
        txn_type=TxnType.refund,
        credits=hold.credits,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=refund_ref,
        metadata={"refund": refund_ref, "lots": {str(i): c for i, c in takes}},
        now=at,
        locked_delta=-hold.credits,
        lot_changes=[(lot_id, -c, c) for lot_id, c in takes],
        lot_reservations=[(lot_id, -c) for lot_id, c in takes],
        lot_basis=basis,
        close_hold=(hold.id, HoldStatus.captured, hold.credits, 0),
        hold_id=hold.id,
        lot_id=takes[0][0],
    )
    wallet, line = await writer.apply_operation(conn, wallet, op)
    return OperationResult(wallet=wallet, line=line, replayed=False)


def _basis_leaving(
    lots: Sequence[Lot], takes: Takes, taxable_paise: int
) -> tuple[list[tuple[uuid.UUID, int, int]], int]:
    """The lot basis a refund of `taxable_paise` takes: `(lot, Δrecognized, Δrefunded)` and
    the residual the journal recognizes (DESIGN §10: recognized + refunded = taxable).

    The refund's taxable value comes from the paise refunded (refunds/allocation.py), the
    lot's unrecognized basis from its running draws; the two can part by a rounding paisa.
    Where the refund empties the lot, whatever basis it left is recognized now; where it
    takes more than the lot has left, the excess comes back out of recognized revenue.
    """
    if taxable_paise == 0:
        return [], 0
    carriers = [(lot, c) for lot, (_, c) in zip(lots, takes, strict=True) if lot.taxable_paise > 0]
    if len(carriers) != 1:
        raise ValueError(f"a refund's basis needs exactly one lot with a basis, not {carriers}")
    lot, credits = carriers[0]
    left = lot.unrecognized_paise - taxable_paise
    emptied = lot.credits_remaining == credits
    residual = left if left < 0 or (left > 0 and emptied) else 0
    return [(lot.id, residual, taxable_paise)], residual


async def release_refund(
    conn: AsyncConnection,
    *,
    hold_id: uuid.UUID,
    takes: Takes,
    idempotency_key: str,
    reason: str,
    refund_ref: str,
) -> OperationResult:
    """The refund did not happen: the credits return to available, the lots are freed."""
    wallet, hold = await _refund_hold(conn, hold_id, takes)
    if done := await settled_already(conn, wallet, hold, idempotency_key, TxnType.release):
        return done
    released = await release_lot_hold(
        conn,
        wallet,
        hold,
        takes,
        idempotency_key=idempotency_key,
        reason=reason,
        source_id=refund_ref,
        metadata={"refund": refund_ref},
        journal=lambda at: postings.refund_hold_released(
            operation_key=idempotency_key,
            refund_ref=refund_ref,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            held_account_id=wallet.held_account_id,
            credits=hold.credits,
            at=at,
            reason=reason,
        ),
    )
    # Spendable again (unless the payment's fraud review holds them anew, in this same
    # transaction: then whoever hears of it finds them held).
    await available.announce(
        conn, wallet_id=wallet.id, credits=hold.credits, cause=f"refund-hold:{hold.id}:release"
    )
    return released


async def release_lot_hold(
    conn: AsyncConnection,
    wallet: Wallet,
    hold: Hold,
    takes: Takes,
    *,
    idempotency_key: str,
    reason: str,
    source_id: str,
    metadata: dict[str, Any],
    journal: Callable[[datetime], Journal],
) -> OperationResult:
    """Release a hold placed by `place_lot_hold`: its credits return to available and its
    lots are freed. The caller holds the wallet's lock and has checked that the hold is
    active and that `takes` add up to it; `journal` writes the release's journal."""
    at = now()
    op = writer.WalletOperation(
        journal=journal(at),
        txn_type=TxnType.release,
        credits=hold.credits,
        idempotency_key=idempotency_key,
        source=reason,
        source_id=source_id,
        metadata=metadata,
        now=at,
        available_delta=hold.credits,
        locked_delta=-hold.credits,
        lot_reservations=[(lot_id, -c) for lot_id, c in takes],
        close_hold=(hold.id, HoldStatus.released, 0, hold.credits),
        hold_id=hold.id,
    )
    after, line = await writer.apply_operation(conn, wallet, op)
    return OperationResult(wallet=after, line=line, replayed=False)
