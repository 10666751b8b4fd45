"""The community economy's checks for `ledger verify` (DESIGN §10).

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.model import CommunityAccounts, House
from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows


@check("community_spends")
async def community_spends(conn: AsyncConnection, report: VerifyReport) -> None:
    """Each spend's journal says what its row says: the wallet gave `credits`, the platform
    kept `fee_credits` and `fee_paise`, deferred revenue gave `basis_paise`; and so, the
    other way round, does each reversal's journal."""
    for r in await rows(
        conn,
        """
        SELECT s.id, s.community_id, x.kind, x.fee_credits, x.fee_paise, x.basis, x.wallet,
               s.fee_credits AS want_fee_credits, s.fee_paise AS want_fee_paise,
               s.basis_paise AS want_basis, s.credits AS want_credits, x.sign
          FROM community_spends s
          LEFT JOIN community_spend_reversals r ON r.spend_id = s.id
          CROSS JOIN LATERAL (
            SELECT j.kind, CASE WHEN j.id = s.journal_id THEN -1 ELSE 1 END AS sign,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :fee_credits), 0)
                       AS fee_credits,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :fee_revenue), 0)
                       AS fee_paise,
                   coalesce(sum(e.amount) FILTER (WHERE e.account_id = :deferred), 0) AS basis,
                   coalesce(sum(e.amount) FILTER (WHERE e.wallet_id IS NOT NULL), 0) AS wallet
              FROM ledger_journals j JOIN ledger_entries e ON e.journal_id = j.id
             WHERE j.id IN (s.journal_id, r.journal_id)
             GROUP BY j.id, j.kind) x
         WHERE (x.sign = -1 AND x.kind <> 'community.spend')
            OR (x.sign = 1 AND x.kind <> 'community.spend.reversed')
            OR x.fee_credits <> x.sign * s.fee_credits
            OR x.fee_paise <> x.sign * s.fee_paise
            OR x.basis <> -x.sign * s.basis_paise
            OR x.wallet <> -x.sign * s.credits""",
        {
            "fee_credits": House.FEE_CREDITS,
            "fee_revenue": House.PLATFORM_FEE_REVENUE,
            "deferred": House.DEFERRED_REVENUE,
        },
    ):
        report.add(
            "community_spend",
            f"community {r.community_id} spend {r.id}",
            f"its {r.kind} journal moves {r.wallet} wallet credits, {r.fee_credits} fee "
            f"credits, {r.fee_paise} fee paise and {r.basis} deferred paise; the spend says "
            f"{r.want_credits}, {r.want_fee_credits}, {r.want_fee_paise}, {r.want_basis}",
        )


@check("community_payables")
async def community_payables(conn: AsyncConnection, report: VerifyReport) -> None:
    """Per community: its payable account = sum of spends' community_paise - sum of reversed ones,
    and its earnings account likewise in credits. Sponsorship releases into the payable are
    left to `sponsorships.invariants`, and settlements' journals to `settlement_payables`
    (what they took is checked against their rows there)."""
    communities = await rows(
        conn,
        """
        SELECT s.community_id,
               sum(s.community_paise) FILTER (WHERE r.spend_id IS NULL) AS paise,
               sum(s.community_credits) FILTER (WHERE r.spend_id IS NULL) AS credits
          FROM community_spends s
          LEFT JOIN community_spend_reversals r ON r.spend_id = s.id
         GROUP BY s.community_id""",
    )
    for c in communities:
        accounts = CommunityAccounts.of(c.community_id)
        [ledger] = await rows(
            conn,
            """
            SELECT coalesce(-sum(amount) FILTER (WHERE account_id = :payable), 0) AS paise,
                   coalesce(-sum(amount) FILTER (WHERE account_id = :earnings), 0) AS credits
              FROM ledger_entries e WHERE account_id IN (:payable, :earnings)
               -- Sponsorship releases into the payable and settlements out of it are checked
               -- by their own checks; neither touches earnings, so nothing there is left out.
               AND NOT (account_id = :payable
                        AND EXISTS (SELECT 1 FROM ledger_journals j
                                     WHERE j.id = e.journal_id
                                       AND (j.kind LIKE 'sponsorship.%'
                                            OR j.kind LIKE 'settlement.%')))""",
            {"payable": accounts.payable, "earnings": accounts.earnings},
        )
        want_paise, want_credits = int(c.paise or 0), int(c.credits or 0)
        if (ledger.paise, ledger.credits) != (want_paise, want_credits):
            report.add(
                "community_payable",
                f"community {c.community_id}",
                f"its accounts hold {ledger.paise} paise payable and {ledger.credits} "
                f"credits earned; its spends say {want_paise} and {want_credits}",
            )


CHECKS: tuple[Check, ...] = (community_spends, community_payables)
