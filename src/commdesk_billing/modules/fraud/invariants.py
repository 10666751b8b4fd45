"""Fraud's checks for `ledger verify`: each review and the wallet hold that keeps its
credits agree (see `modules/ledger/verify.py` for how checks are written and composed).

The wallet's `refund_reservations` ties the lots to the active review holds; it cannot
tell a review decided over a still-active hold (credits locked for ever) or a pending
review whose credits are free (spendable with no reviewer's release) — this does.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows


@check("review_holds")
async def review_holds(conn: AsyncConnection, report: VerifyReport) -> None:
    """A review's hold is a review hold of its wallet, holding what its lots say; active
    exactly while the review is pending. Every active review hold is a pending review's."""
    for r in await rows(
        conn,
        """
        SELECT r.id, r.payment_id, r.status, h.status AS hold_status, h.purpose, h.credits,
               h.wallet_id = r.wallet_id AS same_wallet, x.lots
          FROM fraud_reviews r JOIN wallet_holds h ON h.id = r.hold_id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(value::bigint), 0) AS lots
              FROM jsonb_each_text(coalesce(r.hold_lots, '{}'::jsonb))) x
         WHERE h.purpose <> 'review' OR h.wallet_id <> r.wallet_id
            OR (r.status = 'pending') <> (h.status = 'active')
            OR x.lots <> h.credits""",
    ):
        report.add(
            "review_hold",
            f"payment {r.payment_id} review {r.id}",
            f"a {r.status} review, its hold is a {r.hold_status} {r.purpose} hold of "
            f"{r.credits} credits (same wallet: {r.same_wallet}; its lots say {r.lots})",
        )
    for r in await rows(
        conn,
        """
        SELECT h.id, h.wallet_id, h.credits FROM wallet_holds h
         WHERE h.purpose = 'review' AND h.status = 'active'
           AND NOT EXISTS (SELECT 1 FROM fraud_reviews r
                            WHERE r.hold_id = h.id AND r.status = 'pending')""",
    ):
        report.add(
            "review_hold",
            f"wallet {r.wallet_id} hold {r.id}",
            f"an active review hold of {r.credits} credits that no pending review names",
        )


CHECKS: tuple[Check, ...] = (review_holds,)
