"""The review queue: payments whose score asked for a person, their held credits, and what
the reviewer decided.

Where the credits wait: crediting a payment under review grants its credits as any
purchase does, then, in the same transaction, holds them (`wallet.reviews`: a hold of
purpose `review` on the purchase's own lots). So the books show every credit that was
paid for, and none of them can be spent until a reviewer releases the hold. A refund of
the payment releases the hold first, in the refund's own transaction (`settle_by_refund`),
and then reserves the same lots for the refund.

Locks, in the order every path takes them: the payment row, its wallet, the review row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.errors import NotFound, PaymentNotRefundable, ReviewAlreadyDecided
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.fraud import repository as repo
from commdesk_billing.modules.wallet import available
from commdesk_billing.modules.wallet import reviews as wallet_reviews
from commdesk_billing.modules.wallet.model import Wallet
from commdesk_billing.security.jwt import Principal

log = structlog.get_logger(__name__)


async def open_review(
    conn: AsyncConnection,
    *,
    payment_id: uuid.UUID,
    user_id: uuid.UUID,
    wallet_id: uuid.UUID,
    stage: str,
    score: int,
    rules: list[str],
) -> bool:
    """Put a payment under review (a second review of it changes nothing)."""
    return await repo.insert_review(
        conn,
        {
            "id": uuid.uuid4(),
            "payment_id": payment_id,
            "user_id": user_id,
            "wallet_id": wallet_id,
            "stage": stage,
            "score": score,
            "rules": rules,
        },
    )


async def reopen_if_released_unseen(
    conn: AsyncConnection, *, payment_id: uuid.UUID, score: int, rules: list[str]
) -> bool:
    """The paid stage asks for a review of a payment whose review was released before any
    of its credits were held (a release before the buyer paid, on what the order showed):
    that release never saw this evidence, so the review is pending again, at the paid
    stage. A review released or refunded over a hold stands. True when reopened."""
    review = await repo.review_of_payment(conn, payment_id, lock=True)
    if review is None or review["status"] != "released" or review["hold_id"] is not None:
        return False
    reopened = await repo.reopen_at_paid(conn, review["id"], score, rules)
    if reopened:
        log.warning("fraud.review.reopened_at_paid", payment_id=str(payment_id), score=score)
    return reopened


async def under_review(conn: AsyncConnection, payment_id: uuid.UUID) -> bool:
    review = await repo.review_of_payment(conn, payment_id)
    return review is not None and review["status"] == "pending"


async def hold_if_under_review(
    conn: AsyncConnection,
    *,
    payment_id: uuid.UUID,
    wallet_id: uuid.UUID,
    order_id: str,
    again_after: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Called where the payment's credits were just granted (payment and wallet locked):
    hold them while its review is pending. The hold's id, or None (no pending review).
    `again_after`: the refund whose failure reopened the review (a new hold, a new key)."""
    review = await repo.review_of_payment(conn, payment_id, lock=True)
    if review is None or review["status"] != "pending":
        return None
    if review["hold_id"] is not None:
        return uuid.UUID(str(review["hold_id"]))
    key = f"review:{review['id']}:hold"
    held = await wallet_reviews.hold_for_review(
        conn,
        payment_id=payment_id,
        wallet_id=wallet_id,
        idempotency_key=key if again_after is None else f"{key}:after:{again_after}",
        reason=f"held for fraud review (order {order_id})",
    )
    if held is None:
        return None
    result, takes = held
    assert result.hold is not None
    await repo.set_hold(conn, review["id"], result.hold.id, {str(k): v for k, v in takes})
    log.info("fraud.review.held", payment_id=str(payment_id), credits=result.hold.credits)
    return result.hold.id


async def _release_hold(conn: AsyncConnection, review: dict[str, Any], why: str) -> None:
    if review["hold_id"] is None:
        return  # not credited yet: nothing is held (crediting will see the decision)
    takes = [(uuid.UUID(k), int(v)) for k, v in (review["hold_lots"] or {}).items()]
    await wallet_reviews.release_review(
        conn,
        hold_id=review["hold_id"],
        takes=takes,
        # Per hold: a review reopened after a failed refund holds (and releases) again.
        idempotency_key=f"review:{review['id']}:release:{review['hold_id']}",
        reason=why,
    )


async def release(
    conn: AsyncConnection, caller: Principal, review_id: uuid.UUID, *, request_id: str | None
) -> dict[str, Any]:
    """The reviewer releases the payment: its credits become spendable. Idempotent: a
    released review is answered as it is; a refunded one is a 409. The caller has locked
    the payment and its wallet (in that order) first."""
    review = await repo.get_review(conn, review_id, lock=True)
    if review is None:
        raise NotFound(f"review {review_id} does not exist")
    if review["status"] == "released":
        return review
    if review["status"] != "pending":
        raise ReviewAlreadyDecided(f"review {review_id} was decided: {review['status']}")
    await _release_hold(conn, review, "released by a fraud reviewer")
    if review["hold_id"] is not None:
        # The credits are spendable now, and no `payment.credited` will say so (the
        # crediting announced it while they were held): what waits on available credits
        # (a usage debt the crediting could not repay) hears of it here. Once per
        # release: a released review is answered above without announcing again.
        await available.announce(
            conn,
            wallet_id=review["wallet_id"],
            credits=sum(int(v) for v in (review["hold_lots"] or {}).values()),
            cause=f"fraud-review:{review_id}:release:{review['hold_id']}",
        )
    await repo.decide(conn, review_id, "released", caller.sub, caller.role.value)
    await audit.record(
        conn,
        caller,
        action="fraud.review.released",
        target_type="payment",
        target_id=str(review["payment_id"]),
        details={"review_id": str(review_id), "score": review["score"], "rules": review["rules"]},
        request_id=request_id,
    )
    found = await repo.get_review(conn, review_id)
    assert found is not None
    return found


async def settle_by_refund(
    conn: AsyncConnection, caller: Principal, payment_id: uuid.UUID, *, whole: bool
) -> bool:
    """Called by a refund of the payment, with the payment and its wallet locked, before it
    works out what is refundable: a pending review ends as refunded and its hold is released
    (the refund reserves the same lots next, in this transaction). A partial refund of a
    payment under review is refused: the rest would be released without a decision. True
    when a review was settled."""
    review = await repo.review_of_payment(conn, payment_id, lock=True)
    if review is None or review["status"] != "pending":
        return False
    if not whole:
        raise PaymentNotRefundable(
            f"payment {payment_id} is under fraud review: refund it in full or release it first"
        )
    await _release_hold(conn, review, "released for the refund of a payment under review")
    await repo.decide(conn, review["id"], "refunded", caller.sub, caller.role.value)
    return True


async def hold_what_came_back(conn: AsyncConnection, wallet: Wallet) -> None:
    """Credits came back to `available` in this wallet (a spend hold released, expired or
    captured in part, or a refund not made; the wallet's row is locked): each pending
    review of it now holds what of its purchase it could not hold when it opened. Its hold
    is replaced by a larger one (released, then placed anew on the same lots and more), so
    a review keeps one hold."""
    if wallet.owner_type != "user":
        return
    for review in await repo.pending_reviews_of_wallet(conn, wallet.owner_id, wallet.id):
        payment_id = review["payment_id"]
        if await wallet_reviews.holdable(conn, payment_id=payment_id, wallet_id=wallet.id) == 0:
            continue
        await _release_hold(conn, review, "held again with credits that came back")
        # A fresh key per replacement: this runs inside another operation's transaction,
        # which is what replays; a key naming the old hold could repeat after a reopen.
        held = await wallet_reviews.hold_for_review(
            conn,
            payment_id=payment_id,
            wallet_id=wallet.id,
            idempotency_key=f"review:{review['id']}:hold:more:{uuid.uuid4().hex}",
            reason=f"held for fraud review (payment {payment_id})",
        )
        assert held is not None
        result, takes = held
        assert result.hold is not None
        await repo.replace_hold(conn, review["id"], result.hold.id, {str(k): v for k, v in takes})
        log.warning(
            "fraud.review.held_more", payment_id=str(payment_id), credits=result.hold.credits
        )


async def reopen_after_failed_refund(
    conn: AsyncConnection,
    *,
    payment_id: uuid.UUID,
    wallet_id: uuid.UUID,
    order_id: str,
    refund_id: uuid.UUID,
    refund_created_at: datetime,
) -> uuid.UUID | None:
    """A refund that settled the payment's review (`refunded`) was not made: Cashfree
    refused or cancelled it, and its hold gave the credits back to available. The decision
    did not take effect, so the review is pending again and the credits are held again
    (the reviewer decides anew), rather than spendable without a release. Called with the
    payment and its wallet locked. The new hold's id, or None (nothing reopened)."""
    review = await repo.review_of_payment(conn, payment_id, lock=True)
    if review is None or review["status"] != "refunded":
        return None
    # Only the refund that settled it (asked for in the decision's transaction, or later):
    # a refund asked for before the review was decided held nothing of the review's.
    if review["decided_at"] is None or refund_created_at < review["decided_at"]:
        return None
    await repo.reopen(conn, review["id"])
    held = await hold_if_under_review(
        conn, payment_id=payment_id, wallet_id=wallet_id, order_id=order_id, again_after=refund_id
    )
    log.warning(
        "fraud.review.reopened",
        payment_id=str(payment_id),
        refund_id=str(refund_id),
        held=str(held),
    )
    return held


async def get_review(conn: AsyncConnection, review_id: uuid.UUID) -> dict[str, Any]:
    review = await repo.get_review(conn, review_id)
    if review is None:
        raise NotFound(f"review {review_id} does not exist")
    return review


async def list_reviews(
    conn: AsyncConnection,
    *,
    status: str | None,
    user_id: uuid.UUID | None,
    after: Any,
    limit: int,
) -> list[dict[str, Any]]:
    return await repo.list_reviews(conn, status=status, user_id=user_id, after=after, limit=limit)
