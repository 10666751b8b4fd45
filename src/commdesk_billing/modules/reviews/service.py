"""A reviewer's decision on a payment held by fraud scoring, in one transaction with its
audit row: `release` (the held credits become spendable) or `refund` (the whole payment is
refunded; the refund releases the hold and reserves the same lots, `refunds.requesting`).

This sits above `fraud` and `refunds` (refunds already asks fraud to settle a review when
a held payment is refunded, so fraud cannot call refunds back). Locks in the order every
money path takes them: the payment, its wallet, then the review.

Idempotent by the review's own state: the same decision again answers the review as it is;
the other decision after one was made is a 409 `review_already_decided`.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.config import Settings
from commdesk_billing.errors import NotFound, ReviewAlreadyDecided
from commdesk_billing.modules.audit import service as audit
from commdesk_billing.modules.fraud import auth as fraud_auth
from commdesk_billing.modules.fraud import reviews as fraud_reviews
from commdesk_billing.modules.payments import service as payments
from commdesk_billing.modules.refunds import requesting
from commdesk_billing.modules.refunds.schemas import RefundRequest
from commdesk_billing.modules.wallet import service as wallets
from commdesk_billing.security.jwt import Principal


async def decide(
    conn: AsyncConnection,
    settings: Settings,
    caller: Principal,
    review_id: uuid.UUID,
    decision: str,
    reason: str,
    *,
    request_id: str | None,
) -> dict[str, Any]:
    fraud_auth.may_decide(caller)
    review = await fraud_reviews.get_review(conn, review_id)
    payment = await payments.get(conn, review["payment_id"], lock=True)
    if payment is None:  # pragma: no cover - a review names an existing payment (FK)
        raise NotFound(f"payment {review['payment_id']} does not exist")
    await wallets.get_wallet(conn, payment.wallet_id, lock=True)
    if decision == "release":
        return await fraud_reviews.release(conn, caller, review_id, request_id=request_id)
    current = await fraud_reviews.get_review(conn, review_id)
    if current["status"] == "refunded":
        return current
    if current["status"] != "pending":
        raise ReviewAlreadyDecided(f"review {review_id} was decided: {current['status']}")
    refund = await requesting.open_refund(
        conn,
        settings,
        caller,
        payment.id,
        RefundRequest(reason=reason),
        # Per hold: a review reopened after its refund failed is refunded anew (a new hold).
        f"review:{review_id}:refund:{current['hold_id']}",
    )
    await audit.record(
        conn,
        caller,
        action="fraud.review.refunded",
        target_type="payment",
        target_id=str(payment.id),
        details={
            "review_id": str(review_id),
            "refund_id": str(refund.id),
            "score": review["score"],
            "rules": review["rules"],
            "reason": reason,
        },
        request_id=request_id,
    )
    return await fraud_reviews.get_review(conn, review_id)
