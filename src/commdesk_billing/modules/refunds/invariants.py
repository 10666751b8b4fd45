"""The refunds' checks for `ledger verify`: every refund reversed exactly once (DESIGN §4),
and never more than was bought.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, count, rows


@check("refund_reversal")
async def refund_reversal(conn: AsyncConnection, report: VerifyReport) -> None:
    """A refund's hold and journals match its status: an open refund's hold is active; a
    SUCCESS captured its hold, has both refund journals and paid its amount out of gateway
    clearing; any other refund released its hold and posted nothing. A passthrough refund
    (a sponsorship's) has no hold; its journals are the same two."""
    for r in await rows(
        conn,
        """
        SELECT * FROM (
            SELECT f.id, f.status, f.amount_paise, f.purchase_lot_id, h.status AS hold_status,
                   x.journals, x.paid_out
              FROM refunds f LEFT JOIN wallet_holds h ON h.id = f.hold_id
             CROSS JOIN LATERAL (
                SELECT count(DISTINCT j.id) AS journals,
                       coalesce(sum(e.amount) FILTER (
                           WHERE j.idempotency_key = 'refund:' || f.id || '\\:paid'
                             AND e.account_id = :clearing), 0) AS paid_out
                  FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
                 WHERE j.idempotency_key IN ('refund:' || f.id || '\\:inr',
                                             'refund:' || f.id || '\\:paid')) x
        ) r
         WHERE hold_status IS DISTINCT FROM CASE
                   WHEN purchase_lot_id IS NULL THEN NULL
                   WHEN status IN ('CREATED', 'PENDING', 'ONHOLD') THEN 'active'
                   WHEN status = 'SUCCESS' THEN 'captured' ELSE 'released' END
            OR journals <> CASE WHEN status = 'SUCCESS' THEN 2 ELSE 0 END
            OR (status = 'SUCCESS' AND paid_out <> -amount_paise)""",
        {"clearing": House.GATEWAY_CLEARING},
    ):
        report.add(
            "refund_reversal",
            f"refund {r.id}",
            f"{r.status} refund of {r.amount_paise} paise: hold {r.hold_status}, "
            f"{r.journals} refund journals, {-r.paid_out} paise paid out",
        )
    report.stats["refunds"] = await count(conn, "SELECT count(*) FROM refunds")


@check("refund_totals")
async def refund_totals(conn: AsyncConnection, report: VerifyReport) -> None:
    """A payment's refunded total is the sum of its successful refunds, and its standing
    refunds take no more amount, tax or credits than it bought."""
    for r in await rows(
        conn,
        """
        SELECT p.id, coalesce(p.refund_amount_paise, 0) AS recorded,
               coalesce(sum(f.amount_paise) FILTER (WHERE f.status = 'SUCCESS'), 0) AS done,
               p.amount_paise, p.taxable_paise, p.cgst_paise, p.sgst_paise, p.igst_paise,
               p.base_credits, p.bonus_credits,
               coalesce(sum(f.amount_paise), 0) AS amount,
               coalesce(sum(f.taxable_paise), 0) AS taxable,
               coalesce(sum(f.cgst_paise), 0) AS cgst,
               coalesce(sum(f.sgst_paise), 0) AS sgst,
               coalesce(sum(f.igst_paise), 0) AS igst,
               coalesce(sum(f.base_credits), 0) AS base,
               coalesce(sum(f.bonus_credits), 0) AS bonus
          FROM payments p
          LEFT JOIN refunds f
            ON f.payment_id = p.id AND f.status NOT IN ('FAILED', 'CANCELLED')
         WHERE p.refund_amount_paise IS NOT NULL
            OR EXISTS (SELECT 1 FROM refunds x WHERE x.payment_id = p.id)
         GROUP BY p.id
        HAVING coalesce(p.refund_amount_paise, 0)
                   <> coalesce(sum(f.amount_paise) FILTER (WHERE f.status = 'SUCCESS'), 0)
            OR sum(f.amount_paise) > p.amount_paise OR sum(f.taxable_paise) > p.taxable_paise
            OR sum(f.cgst_paise) > p.cgst_paise OR sum(f.sgst_paise) > p.sgst_paise
            OR sum(f.igst_paise) > p.igst_paise OR sum(f.base_credits) > p.base_credits
            OR sum(f.bonus_credits) > p.bonus_credits""",
    ):
        report.add(
            "refund_totals",
            f"payment {r.id}",
            f"records {r.recorded} paise refunded, successful refunds add to {r.done}; "
            f"standing refunds take {r.amount}/{r.amount_paise} paise, "
            f"{r.taxable}/{r.taxable_paise} taxable, {r.base}/{r.base_credits} credits, "
            f"{r.bonus}/{r.bonus_credits} bonus",
        )


@check("refund_lots")
async def refund_lots(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each lot's reserved and refunded credits are what its open and successful refunds
    take from it (reserved: and what an active fraud review hold earmarks on it)."""
    for r in await rows(
        conn,
        """
        WITH takes AS (
            SELECT f.id, f.status, f.purchase_lot_id AS lot, f.base_credits AS credits
              FROM refunds f WHERE f.base_credits > 0
            UNION ALL
            SELECT f.id, f.status, f.bonus_lot_id, f.bonus_credits
              FROM refunds f WHERE f.bonus_credits > 0
        ), per_lot AS (
            SELECT lot,
                   sum(credits) FILTER (WHERE status IN ('CREATED', 'PENDING', 'ONHOLD'))
                       AS reserved,
                   sum(credits) FILTER (WHERE status = 'SUCCESS') AS refunded
              FROM takes GROUP BY lot
        ), reviewed AS (
            SELECT CAST(x.key AS uuid) AS lot, sum(CAST(x.value AS bigint)) AS credits
              FROM fraud_reviews r
              JOIN wallet_holds h ON h.id = r.hold_id AND h.status = 'active'
             CROSS JOIN LATERAL jsonb_each_text(r.hold_lots) x
             GROUP BY 1
        )
        SELECT l.id, l.wallet_id, l.credits_reserved, l.credits_refunded,
               coalesce(p.reserved, 0) + coalesce(v.credits, 0) AS want_reserved,
               coalesce(p.refunded, 0) AS want_refunded
          FROM per_lot p JOIN credit_lots l ON l.id = p.lot
          LEFT JOIN reviewed v ON v.lot = p.lot
         WHERE l.credits_reserved <> coalesce(p.reserved, 0) + coalesce(v.credits, 0)
            OR l.credits_refunded <> coalesce(p.refunded, 0)""",
    ):
        report.add(
            "refund_lots",
            f"wallet {r.wallet_id} lot {r.id}",
            f"reserves {r.credits_reserved} and has refunded {r.credits_refunded} credits; its "
            f"refunds say {r.want_reserved} and {r.want_refunded}",
        )


@check("refund_amounts")
async def refund_amounts(conn: AsyncConnection, report: VerifyReport) -> None:
    """A refund's hold holds the credits it takes, and a successful refund reversed its
    taxable amount from deferred revenue and its tax from GST payable."""
    for r in await rows(
        conn,
        """
        SELECT f.id, h.credits, f.base_credits + f.bonus_credits AS takes,
               coalesce(x.deferred, 0) AS deferred, coalesce(x.gst, 0) AS gst,
               f.taxable_paise, f.cgst_paise + f.sgst_paise + f.igst_paise AS tax, f.status
          FROM refunds f JOIN wallet_holds h ON h.id = f.hold_id
          LEFT JOIN LATERAL (
            SELECT sum(e.amount) FILTER (WHERE e.account_id = :deferred) AS deferred,
                   sum(e.amount) FILTER (WHERE e.account_id = :gst) AS gst
              FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
             WHERE j.idempotency_key = 'refund:' || f.id || '\\:inr') x ON true
         WHERE h.credits <> f.base_credits + f.bonus_credits
            OR (f.status = 'SUCCESS'
                AND (coalesce(x.deferred, 0) <> f.taxable_paise
                     OR coalesce(x.gst, 0) <> f.cgst_paise + f.sgst_paise + f.igst_paise))""",
        {"deferred": House.DEFERRED_REVENUE, "gst": House.GST_PAYABLE},
    ):
        report.add(
            "refund_amounts",
            f"refund {r.id}",
            f"holds {r.credits} credits for {r.takes}; reversed {r.deferred} deferred revenue "
            f"for {r.taxable_paise} taxable and {r.gst} GST for {r.tax}",
        )


@check("refund_basis")
async def refund_basis(conn: AsyncConnection, report: VerifyReport) -> None:
    """A purchase lot's refunded basis is the taxable value of its payment's succeeded
    refunds (what `refund.owed` took out of deferred revenue), no more, no less."""
    for r in await rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.refunded_paise, coalesce(f.taxable, 0) AS taxable
          FROM credit_lots l
          LEFT JOIN (SELECT payment_id::text AS ref, sum(taxable_paise) AS taxable
                       FROM refunds WHERE status = 'SUCCESS' GROUP BY payment_id) f
            ON f.ref = l.source_ref
         WHERE l.source = 'purchase' AND l.refunded_paise <> coalesce(f.taxable, 0)""",
    ):
        report.add(
            "refund_basis",
            f"wallet {r.wallet_id} lot {r.id}",
            f"the lot says {r.refunded_paise} paise of its basis were refunded, its "
            f"payment's refunds {r.taxable}",
        )


@check("refund_subscription_periods")
async def refund_subscription_periods(conn: AsyncConnection, report: VerifyReport) -> None:
    """A refund is `of_service` exactly when its payment is an INR subscription period's.
    Such a refund holds and takes no credits and
    returns nothing held for someone else; a successful one took its taxable value out of
    subscription revenue and its tax out of GST payable (`subscription.refund_owed`), and
    nothing out of deferred revenue (that is credits' money, not a period's)."""
    for r in await rows(
        conn,
        """
        SELECT f.id, f.status, f.of_service, p.kind, f.hold_id,
               f.base_credits + f.bonus_credits AS credits,
               f.passthrough_paise, f.taxable_paise,
               f.cgst_paise + f.sgst_paise + f.igst_paise AS tax,
               coalesce(x.revenue, 0) AS revenue, coalesce(x.gst, 0) AS gst,
               coalesce(x.deferred, 0) AS deferred
          FROM refunds f JOIN payments p ON p.id = f.payment_id
          LEFT JOIN LATERAL (
            SELECT sum(e.amount) FILTER (WHERE e.account_id = :revenue) AS revenue,
                   sum(e.amount) FILTER (WHERE e.account_id = :gst) AS gst,
                   sum(e.amount) FILTER (WHERE e.account_id = :deferred) AS deferred
              FROM ledger_entries e JOIN ledger_journals j ON j.id = e.journal_id
             WHERE j.idempotency_key = 'refund:' || f.id || '\\:inr') x ON true
         WHERE (p.kind = 'subscription' OR f.of_service)
           AND (f.of_service <> (p.kind = 'subscription') OR f.hold_id IS NOT NULL
                OR f.base_credits + f.bonus_credits <> 0
                OR f.passthrough_paise <> 0 OR coalesce(x.deferred, 0) <> 0
                OR (f.status = 'SUCCESS'
                    AND (coalesce(x.revenue, 0) <> f.taxable_paise
                         OR coalesce(x.gst, 0) <> f.cgst_paise + f.sgst_paise + f.igst_paise)))""",
        {
            "revenue": House.SUBSCRIPTION_REVENUE,
            "gst": House.GST_PAYABLE,
            "deferred": House.DEFERRED_REVENUE,
        },
    ):
        report.add(
            "refund_subscription_periods",
            f"refund {r.id}",
            f"{r.status} refund (of_service {r.of_service}) of a {r.kind} payment: hold "
            f"{r.hold_id}, {r.credits} "
            f"credits, {r.passthrough_paise} passthrough; reversed {r.revenue} subscription "
            f"revenue for {r.taxable_paise} taxable, {r.gst} GST for {r.tax}, "
            f"{r.deferred} deferred revenue",
        )


CHECKS: tuple[Check, ...] = (
    refund_reversal,
    refund_totals,
    refund_lots,
    refund_amounts,
    refund_basis,
    refund_subscription_periods,
)
