"""The wallet's checks for `ledger verify`: statement lines, lots, and what stands behind them.

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows


@check("statement_lines")
async def statement_lines(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each wallet's statement lines follow each other: seq without gaps, each line starting
    where the previous one ended."""
    for r in await rows(
        conn,
        """
        SELECT wallet_id, seq, balance_before, prev_after, prev_seq FROM (
            SELECT wallet_id, seq, balance_before,
                   lag(balance_after) OVER w AS prev_after, lag(seq) OVER w AS prev_seq
              FROM wallet_transactions WINDOW w AS (PARTITION BY wallet_id ORDER BY seq)
        ) t
         WHERE (prev_seq IS NULL AND (seq <> 1 OR balance_before <> 0))
            OR (prev_seq IS NOT NULL AND (seq <> prev_seq + 1 OR balance_before <> prev_after))
        """,
    ):
        report.add(
            "wallet_statement",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} does not follow line #{r.prev_seq} "
            f"(starts at {r.balance_before}, previous ended at {r.prev_after})",
        )


@check("lot_movements")
async def lot_movements(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every lot's movements add up to its remaining credits."""
    for r in await rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.credits_granted, l.credits_remaining, l.credits_refunded,
               coalesce(sum(m.credits), 0) AS moved
          FROM credit_lots l LEFT JOIN credit_lot_movements m ON m.lot_id = l.id
         GROUP BY l.id HAVING coalesce(sum(m.credits), 0) <> l.credits_remaining""",
    ):
        report.add(
            "lot_movements",
            f"wallet {r.wallet_id} lot {r.id}",
            f"remaining {r.credits_remaining} but its movements sum to {r.moved}",
        )


@check("lots_and_lines")
async def lots_and_lines(conn: AsyncConnection, report: VerifyReport) -> None:
    """Tie lots and statement lines to the journals that must stand behind them."""
    for r in await rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.source, j.kind FROM credit_lots l
          JOIN ledger_journals j ON j.id = l.journal_id
          JOIN wallets w ON w.id = l.wallet_id
         WHERE (l.source <> 'spend_reversal'
                AND (j.kind <> 'grant.' || l.source
                     OR NOT EXISTS (
                        SELECT 1 FROM ledger_entries e
                          JOIN ledger_accounts a ON a.id = e.account_id
                         WHERE e.journal_id = l.journal_id
                           AND a.code = 'credits:issuance:' || l.source
                           AND e.amount = l.credits_granted)))
            -- Credits a reversed community spend gave back come from the community and
            -- the platform's fee, not from issuance: the reversal's journal credits them.
            OR (l.source = 'spend_reversal'
                AND (j.kind <> 'community.spend.reversed'
                     OR NOT EXISTS (
                        SELECT 1 FROM ledger_entries e
                         WHERE e.journal_id = l.journal_id
                           AND e.account_id = w.available_account_id
                           AND e.amount = -l.credits_granted)))""",
    ):
        report.add(
            "lot_journal",
            f"wallet {r.wallet_id} lot {r.id}",
            f"a {r.source} lot, but its journal is a {r.kind} of another amount or account",
        )
    for r in await rows(
        conn,
        """
        SELECT t.wallet_id, t.seq, t.balance_before - t.balance_after AS expected, x.moved
          FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(e.amount), 0) AS moved FROM ledger_entries e
             WHERE e.journal_id = t.journal_id AND e.account_id = w.available_account_id) x
         WHERE x.moved <> t.balance_before - t.balance_after""",
    ):
        report.add(
            "statement_journal",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} moves {r.expected} available credits, its journal "
            f"moves {r.moved}",
        )
    for r in await rows(
        conn,
        """
        SELECT t.wallet_id, t.seq, t.transaction_type, t.credits,
               coalesce(sum(m.credits), 0) AS moved
          FROM wallet_transactions t
          LEFT JOIN credit_lot_movements m ON m.wallet_transaction_id = t.id
         GROUP BY t.id
        HAVING coalesce(sum(m.credits), 0) <> CASE
                 WHEN t.transaction_type IN ('purchase', 'bonus', 'promotional',
                                             'refund_reversal', 'community_spend_reversal')
                     THEN t.credits
                 WHEN t.transaction_type IN ('debit', 'capture', 'refund', 'expiry',
                                             'community_spend')
                     THEN -t.credits
                 ELSE 0 END""",
    ):
        report.add(
            "statement_lots",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} ({r.transaction_type} {r.credits}) moved {r.moved} "
            "credits of lots",
        )


@check("refund_reservations")
async def refund_reservations(conn: AsyncConnection, report: VerifyReport) -> None:
    """Lots reserve exactly what the wallet's active refund and review holds hold (both
    earmark the lots they name; a spend hold does not)."""
    for r in await rows(
        conn,
        """
        SELECT w.id, coalesce(l.reserved, 0) AS reserved, coalesce(h.held, 0) AS held
          FROM wallets w
          LEFT JOIN (SELECT wallet_id, sum(credits_reserved) AS reserved FROM credit_lots
                      GROUP BY wallet_id) l ON l.wallet_id = w.id
          LEFT JOIN (SELECT wallet_id, sum(credits) AS held FROM wallet_holds
                      WHERE status = 'active' AND purpose IN ('refund', 'review')
                      GROUP BY wallet_id) h ON h.wallet_id = w.id
         WHERE coalesce(l.reserved, 0) <> coalesce(h.held, 0)""",
    ):
        report.add(
            "refund_reservations",
            f"wallet {r.id}",
            f"lots reserve {r.reserved} credits, active refund and review holds hold {r.held}",
        )


@check("lot_basis")
async def lot_basis(conn: AsyncConnection, report: VerifyReport) -> None:
    """Revenue recognized at consumption (DESIGN §10), per lot and in total.

    Per lot, what its figures say was recognized and refunded is what its movements moved
    (plus what migration 0007 put on it for earlier consumption and refunds), and a lot with
    no credits left has no basis left. In total, deferred revenue is the sum of the lots'
    unrecognized basis and platform revenue the sum of what consumption recognized: the
    ledger and the lots are separate records of the same money."""
    for r in await rows(
        conn,
        """
        SELECT l.id, l.wallet_id, l.recognized_paise, l.refunded_paise, l.backfilled_paise,
               coalesce(m.basis, 0) AS moved
          FROM credit_lots l
          LEFT JOIN (SELECT lot_id, sum(basis_paise) AS basis FROM credit_lot_movements
                      GROUP BY lot_id) m ON m.lot_id = l.id
         WHERE l.recognized_paise + l.refunded_paise
               <> l.backfilled_paise + coalesce(m.basis, 0)""",
    ):
        report.add(
            "lot_basis",
            f"wallet {r.wallet_id} lot {r.id}",
            f"recognized {r.recognized_paise} + refunded {r.refunded_paise} paise, but its "
            f"movements moved {r.moved} (+ {r.backfilled_paise} backfilled)",
        )
    for r in await rows(
        conn,
        """
        SELECT id, wallet_id, taxable_paise - recognized_paise - refunded_paise AS left
          FROM credit_lots
         WHERE credits_remaining = 0 AND taxable_paise - recognized_paise - refunded_paise <> 0
        """,
    ):
        report.add(
            "lot_basis",
            f"wallet {r.wallet_id} lot {r.id}",
            f"no credits left but {r.left} paise of basis not recognized or refunded",
        )
    # Per line: what a consumption's journal took out of deferred revenue is the basis its
    # lot movements say it drew (a refund's is checked against the refund, refund_basis;
    # a reversal's new lot brings basis back in with no movement drawn).
    for r in await rows(
        conn,
        """
        SELECT t.wallet_id, t.seq, t.transaction_type, coalesce(m.basis, 0) AS drawn,
               x.deferred
          FROM wallet_transactions t
          LEFT JOIN (SELECT wallet_transaction_id, sum(basis_paise) AS basis
                       FROM credit_lot_movements GROUP BY wallet_transaction_id) m
            ON m.wallet_transaction_id = t.id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(amount), 0) AS deferred FROM ledger_entries
             WHERE journal_id = t.journal_id AND account_id = :deferred) x
         WHERE t.transaction_type IN ('debit', 'capture', 'community_spend', 'expiry')
           AND coalesce(m.basis, 0) <> x.deferred""",
        {"deferred": House.DEFERRED_REVENUE},
    ):
        report.add(
            "lot_basis",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} ({r.transaction_type}) drew {r.drawn} paise of basis, "
            f"its journal took {r.deferred} out of deferred revenue",
        )
    [totals] = await rows(
        conn,
        """
        SELECT (SELECT coalesce(sum(taxable_paise - recognized_paise - refunded_paise), 0)
                  FROM credit_lots) AS unrecognized,
               -- What left deferred revenue for good: recognized, less what reversed
               -- community spends brought back into it (as new lots' basis).
               (SELECT coalesce(sum(recognized_paise), 0)
                       - coalesce(sum(taxable_paise) FILTER (WHERE source = 'spend_reversal'), 0)
                  FROM credit_lots) AS recognized,
               (SELECT coalesce(-sum(amount), 0) FROM ledger_entries
                 WHERE account_id = :deferred) AS deferred,
               -- Where it went: platform revenue, platform fees, what communities were
               -- owed for spends (a sponsorship's release into a payable never was credits;
               -- settlements, which pay payables out, are checked apart: both left out).
               (SELECT coalesce(-sum(e.amount), 0) FROM ledger_entries e
                 WHERE e.account_id IN (:platform, :fees, :breakage)
                    OR (e.account_id IN (SELECT id FROM ledger_accounts
                                          WHERE kind = 'community_payable')
                        AND NOT EXISTS (SELECT 1 FROM ledger_journals j
                                         WHERE j.id = e.journal_id
                                           AND (j.kind LIKE 'sponsorship.%'
                                                OR j.kind LIKE 'settlement.%')))) AS platform""",
        {
            "deferred": House.DEFERRED_REVENUE,
            "platform": House.PLATFORM_REVENUE,
            "fees": House.PLATFORM_FEE_REVENUE,
            "breakage": House.BREAKAGE_REVENUE,
        },
    )
    if totals.deferred != totals.unrecognized:
        report.add(
            "deferred_revenue",
            "inr:deferred_revenue",
            f"the ledger holds {totals.deferred} paise, the lots' unrecognized basis is "
            f"{totals.unrecognized}",
        )
    if totals.platform != totals.recognized:
        report.add(
            "recognized_revenue",
            "inr:platform_revenue + fees + community payables + breakage",
            f"the ledger holds {totals.platform} paise, the lots recognized {totals.recognized}",
        )


CHECKS: tuple[Check, ...] = (
    statement_lines,
    lot_movements,
    lots_and_lines,
    refund_reservations,
    lot_basis,
)
