"""The payees' checks for `ledger verify` (DESIGN §11): what a settlement trusts of a payout
account. See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows
from commdesk_billing.modules.payees.model import BENEFICIARY_ID_SQL
from commdesk_billing.modules.payees.verification import NAME_MATCH_RANK

# Cashfree's name-match levels, weakest first, as a SQL array (`array_position` ranks them).
_LEVELS = "ARRAY[" + ", ".join(f"'{level}'" for level in NAME_MATCH_RANK) + "]"


@check("payout_accounts")
async def payout_accounts(conn: AsyncConnection, report: VerifyReport) -> None:
    """- a verified version has a beneficiary, and a verified bank account a name match at
      least the floor it was verified with;
    - a beneficiary is the payee's own for this account: derived (`beneficiary_id_for`)
      from a version of the same payee and the same account, not after this one;
    - a payee with versions has exactly one current, the newest, and versions 1..n;
    - no version was made current before its predecessor was superseded (superseded at
      the successor's creation, never before its own);
    - a version is blocked until its creation + the cooling-off it was made with, and that
      cooling-off is not nothing when an earlier version was verified;
    - no two payees' current verified accounts are one account (fingerprint)."""
    for r in await rows(
        conn,
        f"""
        SELECT payee_id, version FROM payout_accounts
         WHERE verification_status = 'verified'
           AND (beneficiary_id IS NULL OR verified_at IS NULL
                OR (method = 'bank' AND (name_match_result IS NULL OR name_match_min IS NULL
                    OR coalesce(array_position({_LEVELS}, name_match_result), 0)
                       < coalesce(array_position({_LEVELS}, name_match_min), 99))))""",
    ):
        report.add(
            "payout_account_verified",
            f"payee {r.payee_id} version {r.version}",
            "verified without a beneficiary, a verification time or (bank) a name match "
            "at least its floor",
        )
    for r in await rows(
        conn,
        f"""
        SELECT r.payee_id, r.version FROM payout_accounts r
         WHERE r.beneficiary_id IS NOT NULL
           AND NOT EXISTS (
               SELECT 1 FROM payout_accounts o
                WHERE o.payee_id = r.payee_id AND o.version <= r.version
                  AND o.account_fingerprint = r.account_fingerprint
                  AND r.beneficiary_id = {BENEFICIARY_ID_SQL})""",
    ):
        report.add(
            "payout_account_beneficiary",
            f"payee {r.payee_id} version {r.version}",
            "its beneficiary is not the one derived from a version of this payee's same "
            "account: the payout would go elsewhere",
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
        SELECT r.payee_id, r.version FROM payout_accounts r
         WHERE r.payouts_blocked_until
               <> r.created_at + make_interval(secs => r.cooling_off_s)
            OR (r.cooling_off_s = 0 AND EXISTS (
                SELECT 1 FROM payout_accounts e
                 WHERE e.payee_id = r.payee_id AND e.version < r.version
                   AND e.verification_status = 'verified'))
        """,
    ):
        report.add(
            "payout_account_superseded",
            f"payee {r.payee_id} version {r.version}",
            "not superseded when its successor was made, or not blocked for the cooling-off "
            "it was made with (none allowed only before a first verified account)",
        )
    for r in await rows(
        conn,
        """
        SELECT account_fingerprint, array_agg(payee_id::text ORDER BY payee_id) AS payees
          FROM payout_accounts
         WHERE superseded_at IS NULL AND verification_status = 'verified'
         GROUP BY account_fingerprint HAVING count(*) > 1""",
    ):
        report.add(
            "payout_account_shared",
            "payees " + ", ".join(r.payees),
            "their current payout accounts are one account",
        )


CHECKS: tuple[Check, ...] = (payout_accounts,)
