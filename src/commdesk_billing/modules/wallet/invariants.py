"""The wallet's checks for `ledger verify`: statement lines, lots, and what stands behind them.

See `modules/ledger/verify.py` for how checks are written and composed.

Incremental runs (`report.touched` is the wallets with an entry after the checkpoint): the
statement lines walked are those after each touched wallet's verified line
(`ledger_verify_wallets.statement_seq`), the lot movements those of these lines, and each
lot's remaining credits and basis are checked against its verified movement sums
(`wallet_verify_lots`) plus its new movements, for every lot (the lot rows are read whole,
never the old movements). A full run walks every line and movement.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows
from commdesk_billing.modules.wallet.verified import record_lots


def _lines(report: VerifyReport, *, from_verified: bool = False) -> str:
    """The statement lines this run walks, as a FROM item `t` with `t.mark`, the wallet's
    verified line (0 on a full run, which walks every line). `from_verified`: include the
    verified line itself, to link the first new line to it.

    Incremental: an index range of `(wallet_id, seq)` per touched wallet. LATERAL with
    OFFSET 0 keeps it so: a planner that overestimates the new lines would otherwise hash
    the whole table."""
    if report.touched is None:
        return "(SELECT t.*, CAST(0 AS bigint) AS mark FROM wallet_transactions t) t"
    after = ">=" if from_verified else ">"
    return f"""(SELECT t.*, coalesce(k.statement_seq, 0) AS mark
                  FROM unnest(CAST(:touched AS uuid[])) s(id)
                  LEFT JOIN ledger_verify_wallets k ON k.wallet_id = s.id
                 CROSS JOIN LATERAL (
                       SELECT t.* FROM wallet_transactions t
                        WHERE t.wallet_id = s.id AND t.seq {after} coalesce(k.statement_seq, 0)
                       OFFSET 0) t) t"""


def _movements(report: VerifyReport) -> str:
    """The lot movements this run walks, as a FROM item `m`: those of the walked lines (an
    index probe per line, fenced like the lines)."""
    if report.touched is None:
        return "credit_lot_movements m"
    return f"""{_lines(report)} CROSS JOIN LATERAL (
                   SELECT m.* FROM credit_lot_movements m
                    WHERE m.wallet_transaction_id = t.id OFFSET 0) m"""


def _line_moved(report: VerifyReport, column: str) -> str:
    """A join giving each walked line `t` its movements' sum of `column` as `m.moved`: one
    aggregate over all movements on a full run, an index probe per new line otherwise."""
    if report.touched is None:
        return f"""LEFT JOIN (SELECT wallet_transaction_id, sum({column}) AS moved
                               FROM credit_lot_movements GROUP BY wallet_transaction_id) m
                          ON m.wallet_transaction_id = t.id"""
    return f"""LEFT JOIN LATERAL (SELECT sum({column}) AS moved FROM credit_lot_movements
                                 WHERE wallet_transaction_id = t.id) m ON true"""


def _lot_sums(report: VerifyReport) -> str:
    """Per lot (`l`): `v` its verified movement sums (none on a full run) and `n` its walked
    movements' sums (credits, basis)."""
    verified = (
        "CROSS JOIN (SELECT CAST(0 AS bigint) AS credits_moved, CAST(0 AS bigint) AS basis_moved) v"
        if report.touched is None
        else "LEFT JOIN wallet_verify_lots v ON v.lot_id = l.id"
    )
    return f"""{verified}
          LEFT JOIN (SELECT m.lot_id, sum(m.credits) AS credits, sum(m.basis_paise) AS basis
                       FROM {_movements(report)} GROUP BY m.lot_id) n ON n.lot_id = l.id"""


def _params(report: VerifyReport, **more: Any) -> dict[str, Any]:
    return {"touched": report.touched, **more}


@check("statement_lines")
async def statement_lines(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each wallet's statement lines follow each other: seq without gaps, each line starting
    where the previous one ended. Incremental: the touched wallets' new lines, the first
    following the verified one."""
    for r in await rows(
        conn,
        f"""
        SELECT wallet_id, seq, balance_before, prev_after, prev_seq, mark FROM (
            SELECT t.wallet_id, t.seq, t.balance_before, t.mark,
                   lag(t.balance_after) OVER w AS prev_after, lag(t.seq) OVER w AS prev_seq
              FROM {_lines(report, from_verified=True)}
            WINDOW w AS (PARTITION BY t.wallet_id ORDER BY t.seq)
        ) t
         WHERE (prev_seq IS NULL AND mark = 0 AND (seq <> 1 OR balance_before <> 0))
            OR (prev_seq IS NULL AND mark > 0 AND seq <> mark)
            OR (prev_seq IS NOT NULL AND (seq <> prev_seq + 1 OR balance_before <> prev_after))
        """,
        _params(report),
    ):
        if r.prev_seq is None and r.mark > 0:
            report.add(
                "wallet_statement",
                f"wallet {r.wallet_id}",
                f"statement line #{r.mark}, verified before, is gone (first found is #{r.seq})",
            )
            continue
        report.add(
            "wallet_statement",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} does not follow line #{r.prev_seq} "
            f"(starts at {r.balance_before}, previous ended at {r.prev_after})",
        )


@check("lot_movements")
async def lot_movements(conn: AsyncConnection, report: VerifyReport) -> None:
    """Every lot's movements add up to its remaining credits. Incremental: its verified
    movement sums plus the movements of the lines walked, for every lot. What was walked is
    recorded for the next run."""
    full = report.touched is None
    walked: list[tuple[uuid.UUID, int, int]] = []
    for r in await rows(
        conn,
        f"""
        SELECT l.id, l.wallet_id, l.credits_remaining,
               coalesce(v.credits_moved, 0) + coalesce(n.credits, 0) AS moved,
               n.lot_id IS NOT NULL AS walked, coalesce(n.credits, 0) AS new_credits,
               coalesce(n.basis, 0) AS new_basis
          FROM credit_lots l
          {_lot_sums(report)}
         WHERE {"true" if full else "n.lot_id IS NOT NULL"}
            OR l.credits_remaining <> coalesce(v.credits_moved, 0) + coalesce(n.credits, 0)""",
        _params(report),
    ):
        if r.walked or full:
            walked.append((r.id, int(r.new_credits), int(r.new_basis)))
        if r.moved != r.credits_remaining:
            report.add(
                "lot_movements",
                f"wallet {r.wallet_id} lot {r.id}",
                f"remaining {r.credits_remaining} but its movements sum to {r.moved}",
            )

    async def record(c: AsyncConnection) -> None:
        await record_lots(c, walked, replace_all=full)

    report.on_checkpoint(record)


@check("lots_and_lines")
async def lots_and_lines(conn: AsyncConnection, report: VerifyReport) -> None:
    """Tie lots and statement lines to the journals that must stand behind them.
    Incremental: the lots with a walked movement or no verified record (a lot's source,
    journal and grant never change: `credit_lots_fixed`), and the walked lines."""
    lots = (
        "credit_lots l"
        if report.touched is None
        else f"""credit_lots l LEFT JOIN wallet_verify_lots v ON v.lot_id = l.id
                 WHERE (v.lot_id IS NULL OR l.id IN (SELECT m.lot_id FROM {_movements(report)}))"""
    )
    for r in await rows(
        conn,
        f"""
        SELECT l.id, l.wallet_id, l.source, j.kind FROM (SELECT l.* FROM {lots}) l
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
        _params(report),
    ):
        report.add(
            "lot_journal",
            f"wallet {r.wallet_id} lot {r.id}",
            f"a {r.source} lot, but its journal is a {r.kind} of another amount or account",
        )
    for r in await rows(
        conn,
        f"""
        SELECT t.wallet_id, t.seq, t.balance_before - t.balance_after AS expected, x.moved
          FROM {_lines(report)} JOIN wallets w ON w.id = t.wallet_id
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(e.amount), 0) AS moved FROM ledger_entries e
             WHERE e.journal_id = t.journal_id AND e.account_id = w.available_account_id) x
         WHERE x.moved <> t.balance_before - t.balance_after""",
        _params(report),
    ):
        report.add(
            "statement_journal",
            f"wallet {r.wallet_id}",
            f"statement line #{r.seq} moves {r.expected} available credits, its journal "
            f"moves {r.moved}",
        )
    for r in await rows(
        conn,
        f"""
        SELECT t.wallet_id, t.seq, t.transaction_type, t.credits,
               coalesce(m.moved, 0) AS moved
          FROM {_lines(report)}
          {_line_moved(report, "credits")}
         WHERE coalesce(m.moved, 0) <> CASE
                 WHEN t.transaction_type IN ('purchase', 'bonus', 'promotional',
                                             'refund_reversal', 'community_spend_reversal')
                     THEN t.credits
                 WHEN t.transaction_type IN ('debit', 'capture', 'refund', 'expiry',
                                             'community_spend')
                     THEN -t.credits
                 ELSE 0 END""",
        _params(report),
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


# What left deferred revenue for good, as the ledger says, through the checkpoint: carried
# from run to run (it is not one account's sum: community payables count only for spends).
_RECOGNIZED = "lot_basis.recognized_paise"


@check("lot_basis")
async def lot_basis(conn: AsyncConnection, report: VerifyReport) -> None:
    """Revenue recognized at consumption (DESIGN §10), per lot and in total.

    Per lot, what its figures say was recognized and refunded is what its movements moved
    (plus what migration 0007 put on it for earlier consumption and refunds), and a lot with
    no credits left has no basis left. In total, deferred revenue is the sum of the lots'
    unrecognized basis and platform revenue the sum of what consumption recognized: the
    ledger and the lots are separate records of the same money.

    Incremental: every lot against its verified basis plus its walked movements; the walked
    lines; the ledger's totals as at the checkpoint (verified sums, a carried total) plus the
    legs after it. The lots' totals are summed whole (lot rows only)."""
    for r in await rows(
        conn,
        f"""
        SELECT l.id, l.wallet_id, l.recognized_paise, l.refunded_paise, l.backfilled_paise,
               coalesce(v.basis_moved, 0) + coalesce(n.basis, 0) AS moved
          FROM credit_lots l
          {_lot_sums(report)}
         WHERE l.recognized_paise + l.refunded_paise
               <> l.backfilled_paise + coalesce(v.basis_moved, 0) + coalesce(n.basis, 0)""",
        _params(report),
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
        f"""
        SELECT t.wallet_id, t.seq, t.transaction_type, coalesce(m.moved, 0) AS drawn,
               x.deferred
          FROM {_lines(report)}
          {_line_moved(report, "basis_paise")}
          CROSS JOIN LATERAL (
            SELECT coalesce(sum(amount), 0) AS deferred FROM ledger_entries
             WHERE journal_id = t.journal_id AND account_id = :deferred) x
         WHERE t.transaction_type IN ('debit', 'capture', 'community_spend', 'expiry')
           AND coalesce(m.moved, 0) <> x.deferred""",
        _params(report, deferred=House.DEFERRED_REVENUE),
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
        WITH recognized AS (
            -- What left deferred revenue for good: platform revenue, platform fees, what
            -- communities were owed for spends (a sponsorship's release into a payable
            -- never was credits; settlements, which pay payables out, are checked apart:
            -- both left out), breakage. The legs after the checkpoint, and of those the
            -- ones up to the next checkpoint (carried).
            SELECT coalesce(-sum(e.amount), 0) AS after,
                   coalesce(-sum(e.amount) FILTER (WHERE e.id <= :until), 0) AS through
              FROM ledger_entries e
             WHERE e.id > :c
               AND (e.account_id IN (:platform, :fees, :breakage)
                    OR (e.account_id IN (SELECT id FROM ledger_accounts
                                          WHERE kind = 'community_payable')
                        AND NOT EXISTS (SELECT 1 FROM ledger_journals j
                                         WHERE j.id = e.journal_id
                                           AND (j.kind LIKE 'sponsorship.%'
                                                OR j.kind LIKE 'settlement.%'))))
        )
        SELECT (SELECT coalesce(sum(taxable_paise - recognized_paise - refunded_paise), 0)
                  FROM credit_lots) AS unrecognized,
               -- What left deferred revenue for good: recognized, less what reversed
               -- community spends brought back into it (as new lots' basis).
               (SELECT coalesce(sum(recognized_paise), 0)
                       - coalesce(sum(taxable_paise) FILTER (WHERE source = 'spend_reversal'), 0)
                  FROM credit_lots) AS recognized,
               (SELECT coalesce(-sum(balance), 0) FROM ledger_verify_sums
                 WHERE account_id = :deferred AND :c > 0)
               + (SELECT coalesce(-sum(amount), 0) FROM ledger_entries
                   WHERE account_id = :deferred AND id > :c) AS deferred,
               r.after AS platform_after, r.through AS platform_through
          FROM recognized r""",
        {
            "c": report.since.through_entry_id,
            "until": report.until,
            "deferred": House.DEFERRED_REVENUE,
            "platform": House.PLATFORM_REVENUE,
            "fees": House.PLATFORM_FEE_REVENUE,
            "breakage": House.BREAKAGE_REVENUE,
        },
    )
    carried = report.figure(_RECOGNIZED)
    platform = carried + int(totals.platform_after)
    report.carry(_RECOGNIZED, carried + int(totals.platform_through))
    if totals.deferred != totals.unrecognized:
        report.add(
            "deferred_revenue",
            "inr:deferred_revenue",
            f"the ledger holds {totals.deferred} paise, the lots' unrecognized basis is "
            f"{totals.unrecognized}",
        )
    if platform != totals.recognized:
        report.add(
            "recognized_revenue",
            "inr:platform_revenue + fees + community payables + breakage",
            f"the ledger holds {platform} paise, the lots recognized {totals.recognized}",
        )


CHECKS: tuple[Check, ...] = (
    statement_lines,
    lot_movements,
    lots_and_lines,
    refund_reservations,
    lot_basis,
)
