"""The wallet's side of a fraud review: a purchase's credits held until a reviewer decides.

A review hold is shaped like a refund's (`wallet.refunds`): it earmarks the purchase's own
lots (`credits_reserved`) and moves their credits from available to held, so no spend can
draw them and a refund later finds them exactly where they were. Nothing but the review
settles it: the hold API refuses it (`_not_a_refund` in `service`), the expiry job skips it
(it is not a spend hold). Release returns the credits to available and frees the lots;
a refund of the payment releases it first, in the refund's own transaction, then reserves
the same lots for the refund.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger import postings
from commdesk_billing.modules.wallet import repository as repo
from commdesk_billing.modules.wallet.common import OperationResult, lock, replay
from commdesk_billing.modules.wallet.model import TxnType
from commdesk_billing.modules.wallet.refunds import (
    Takes,
    locked_lot_hold,
    place_lot_hold,
    release_lot_hold,
    settled_already,
)


def _takes(
    available: int, lots: dict[str, tuple[uuid.UUID, int, int]]
) -> list[tuple[uuid.UUID, int]]:
    # What is still drawable of the lots, within what is available: credits granted in this
    # transaction are all there; a review opened after payment finds some of them spent,
    # or available lowered by a spend hold (which reserves no lot), and holds the rest.
    room = available
    takes: list[tuple[uuid.UUID, int]] = []
    for source in ("purchase", "bonus"):
        if source in lots and (take := min(lots[source][1], room)) > 0:
            takes.append((lots[source][0], take))
            room -= take
    return takes


async def holdable(conn: AsyncConnection, *, payment_id: uuid.UUID, wallet_id: uuid.UUID) -> int:
    """How many more credits of the payment's lots a review hold could take now (on top of
    what its lots already reserve)."""
    wallet = await lock(conn, wallet_id)
    return sum(
        c for _, c in _takes(wallet.available_credits, await repo.lots_of_payment(conn, payment_id))
    )


async def hold_for_review(
    conn: AsyncConnection,
    *,
    payment_id: uuid.UUID,
    wallet_id: uuid.UUID,
    idempotency_key: str,
    reason: str,
) -> tuple[OperationResult, list[tuple[uuid.UUID, int]]] | None:
    """Hold what is still drawable of the payment's purchase and bonus lots. Returns the
    operation and the lots it earmarked, or None when nothing is left to hold."""
    wallet = await lock(conn, wallet_id)
    lots = await repo.lots_of_payment(conn, payment_id)
    if done := await replay(conn, wallet, idempotency_key, TxnType.hold, None):
        return done, [(uuid.UUID(k), int(v)) for k, v in done.line.metadata["lots"].items()]
    takes = _takes(wallet.available_credits, lots)
    total = sum(c for _, c in takes)
    if total == 0:
        return None
    placed = await place_lot_hold(
        conn,
        wallet,
        takes=takes,
        purpose="review",
        idempotency_key=idempotency_key,
        reason=reason,
        source_id=str(payment_id),
        metadata={"review_of": str(payment_id), "lots": {str(i): c for i, c in takes}},
        journal=lambda at: postings.hold_placed(
            operation_key=idempotency_key,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            held_account_id=wallet.held_account_id,
            credits=total,
            at=at,
            reason=reason,
        ),
    )
    return placed, takes


async def release_review(
    conn: AsyncConnection,
    *,
    hold_id: uuid.UUID,
    takes: Takes,
    idempotency_key: str,
    reason: str,
) -> OperationResult:
    """The reviewer released the payment (or a refund is about to take the credits): the
    credits return to available and the lots are freed."""
    wallet, hold = await locked_lot_hold(conn, hold_id, "review")
    if done := await settled_already(conn, wallet, hold, idempotency_key, TxnType.release):
        return done
    if sum(c for _, c in takes) != hold.credits:
        raise ValueError(f"review hold {hold_id} holds {hold.credits} credits, not {takes}")
    return await release_lot_hold(
        conn,
        wallet,
        hold,
        takes,
        idempotency_key=idempotency_key,
        reason=reason,
        source_id=str(hold.id),
        metadata={"review_hold": str(hold.id)},
        journal=lambda at: postings.hold_released(
            operation_key=idempotency_key,
            wallet_id=wallet.id,
            available_account_id=wallet.available_account_id,
            held_account_id=wallet.held_account_id,
            credits=hold.credits,
            at=at,
            reason=reason,
        ),
    )
