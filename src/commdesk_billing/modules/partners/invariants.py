"""The partners' checks for `ledger verify` (DESIGN §11).

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import House, PartnerAccounts
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows

# Each share's or reversal's journal, as (expense leg, payable leg, legs elsewhere).
_JOURNAL_FIGURES = """
    SELECT j.kind,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = :expense), 0) AS expense,
           coalesce(sum(e.amount) FILTER (WHERE e.account_id = a.id), 0) AS payable,
           count(*) FILTER (WHERE e.account_id NOT IN (:expense, a.id)) AS other
      FROM ledger_journals j
      JOIN ledger_entries e ON e.journal_id = j.id
      -- ':' apart from 'payable', or it would read as a bind parameter.
      JOIN ledger_accounts a ON a.code = 'partner:' || s.partner_id || ':' || 'payable'
     WHERE j.id = {journal}
     GROUP BY j.id, j.kind
"""


@check("partner_shares")
async def partner_shares(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each share's journal says what its row says (Dr expense, Cr the partner's payable, by
    share_paise, nothing else), and the row's share is its rate of its taxable value; each
    reversal's journal the same the other way; a share's reversals never exceed it."""
    for r in await rows(
        conn,
        f"""
        SELECT s.id, s.partner_id, s.share_paise, x.kind, x.expense, x.payable, x.other
          FROM partner_shares s
          LEFT JOIN LATERAL ({_JOURNAL_FIGURES.format(journal="s.journal_id")}) x ON true
         WHERE x.kind IS DISTINCT FROM 'partner.share'
            OR x.expense <> s.share_paise OR x.payable <> -s.share_paise OR x.other <> 0
            OR s.share_paise <> (2 * s.taxable_paise * s.share_bps + 10000) / 20000""",
        {"expense": House.PARTNER_EXPENSE},
    ):
        report.add(
            "partner_share",
            f"partner {r.partner_id} share {r.id}",
            f"its {r.kind} journal moves {r.expense} paise of expense and {r.payable} of "
            f"payable ({r.other} other legs); the share, or its rate, says {r.share_paise}",
        )
    for r in await rows(
        conn,
        f"""
        SELECT v.id, s.partner_id, v.share_paise, x.kind, x.expense, x.payable, x.other
          FROM partner_share_reversals v
          JOIN partner_shares s ON s.id = v.share_id
          LEFT JOIN LATERAL ({_JOURNAL_FIGURES.format(journal="v.journal_id")}) x ON true
         WHERE v.journal_id IS NOT NULL
           AND (x.kind IS DISTINCT FROM 'partner.share.reversed'
                OR x.expense <> -v.share_paise OR x.payable <> v.share_paise
                OR x.other <> 0)""",
        {"expense": House.PARTNER_EXPENSE},
    ):
        report.add(
            "partner_share",
            f"partner {r.partner_id} reversal {r.id}",
            f"its {r.kind} journal moves {r.expense} paise of expense and {r.payable} of "
            f"payable ({r.other} other legs); the reversal says {r.share_paise}",
        )
    for r in await rows(
        conn,
        """
        SELECT s.id, s.partner_id, s.share_paise, sum(v.share_paise) AS back
          FROM partner_shares s JOIN partner_share_reversals v ON v.share_id = s.id
         GROUP BY s.id HAVING sum(v.share_paise) > s.share_paise""",
    ):
        report.add(
            "partner_share",
            f"partner {r.partner_id} share {r.id}",
            f"refunds took back {r.back} paise of a {r.share_paise} paise share",
        )


_PER_PARTNER = """
    SELECT p.partner_id, sum(p.paise) AS paise FROM (
        SELECT partner_id, share_paise AS paise FROM partner_shares
        UNION ALL
        SELECT s.partner_id, -v.share_paise FROM partner_share_reversals v
          JOIN partner_shares s ON s.id = v.share_id) p
     GROUP BY p.partner_id
"""


@check("partner_payables")
async def partner_payables(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per partner: its payable account = Σ shares - Σ reversals, also for an account with
    no share behind it; and the house expense account = the same over every partner.
    Settlements' journals are left out here: `settlement_payables` checks what they took."""
    want = {p.partner_id: int(p.paise or 0) for p in await rows(conn, _PER_PARTNER)}
    held = {
        a.code.split(":")[1]: int(a.paise)
        for a in await rows(
            conn,
            """
            SELECT a.code, coalesce(-sum(e.amount), 0) AS paise
              FROM ledger_accounts a
              LEFT JOIN ledger_entries e ON e.account_id = a.id
                   AND e.journal_id NOT IN (SELECT id FROM ledger_journals
                                             WHERE kind LIKE 'settlement.%')
             WHERE a.kind = 'partner_payable'
             GROUP BY a.id, a.code""",
        )
    }
    for partner_id in sorted(set(want) | set(held)):
        if held.get(partner_id, 0) != want.get(partner_id, 0):
            report.add(
                "partner_payable",
                f"partner {partner_id} ({PartnerAccounts.of(partner_id).payable})",
                f"its payable account holds {held.get(partner_id, 0)} paise; its shares "
                f"less their reversals say {want.get(partner_id, 0)}",
            )
    total = sum(want.values())
    [expense] = await rows(
        conn,
        "SELECT coalesce(sum(amount), 0) AS paise FROM ledger_entries WHERE account_id = :a",
        {"a": House.PARTNER_EXPENSE},
    )
    if int(expense.paise) != total:
        report.add(
            "partner_expense",
            "inr:partner_expense",
            f"the expense account holds {expense.paise} paise; shares less reversals over "
            f"every partner say {total}",
        )


CHECKS: tuple[Check, ...] = (partner_shares, partner_payables)
