"""The payees' checks for `ledger verify` (DESIGN §11): what a settlement trusts of a payout
account. See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows


@check("payout_accounts")
async def payout_accounts(conn: AsyncConnection, report: VerifyReport) -> None:
    """- a verified version has a beneficiary, and a verified bank account a name match;
    - a payee with versions has exactly one current, the newest, and versions 1..n;
    - no version was made current before its predecessor was superseded (superseded at
      the successor's creation, never before its own);
    - a version is never blocked for less than its creation (cooling-off runs forward);
    - no two payees' current accounts are one account (fingerprint)."""
    for r in await rows(
        conn,
        """
        SELECT payee_id, version FROM payout_accounts
         WHERE verification_status = 'verified'
           AND (beneficiary_id IS NULL OR verified_at IS NULL
                OR (method = 'bank' AND name_match_result IS NULL))""",
    ):
        report.add(
            "payout_account_verified",
            f"payee {r.payee_id} version {r.version}",
            "verified without a beneficiary, a verification time or (bank) a name match",
        )
    for r in await rows(
        conn,
        """
        SELECT payee_id, count(*) AS n, max(version) AS top,
               count(*) FILTER (WHERE superseded_at IS NULL) AS current,
               max(version) FILTER (WHERE superseded_at IS NULL) AS current_version
          FROM payout_accounts GROUP BY payee_id
        HAVING count(*) FILTER (WHERE superseded_at IS NULL) <> 1
            OR max(version) FILTER (WHERE superseded_at IS NULL) <> max(version)
            OR count(*) <> max(version)""",
    ):
        report.add(
            "payout_account_versions",
            f"payee {r.payee_id}",
            f"{r.n} versions up to {r.top}, {r.current} current (version "
            f"{r.current_version}): one current, the newest, versions 1..n expected",
        )
    for r in await rows(
        conn,
        """
        SELECT a.payee_id, a.version FROM payout_accounts a
          JOIN payout_accounts b ON b.payee_id = a.payee_id AND b.version = a.version + 1
         WHERE a.superseded_at IS DISTINCT FROM b.created_at
        UNION ALL
        SELECT payee_id, version FROM payout_accounts WHERE payouts_blocked_until < created_at
        """,
    ):
        report.add(
            "payout_account_superseded",
            f"payee {r.payee_id} version {r.version}",
            "not superseded when its successor was made, or blocked before it was made",
        )
    for r in await rows(
        conn,
        """
        SELECT account_fingerprint, array_agg(payee_id::text ORDER BY payee_id) AS payees
          FROM payout_accounts
         WHERE superseded_at IS NULL AND account_fingerprint IS NOT NULL
         GROUP BY account_fingerprint HAVING count(*) > 1""",
    ):
        report.add(
            "payout_account_shared",
            "payees " + ", ".join(r.payees),
            "their current payout accounts are one account",
        )


CHECKS: tuple[Check, ...] = (payout_accounts,)
