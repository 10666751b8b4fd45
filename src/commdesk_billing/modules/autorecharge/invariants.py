"""Auto-recharge's check for `ledger verify`: a wallet shows as pending exactly the credits
of its pending recharge (none, or one: never two in flight).

See `modules/ledger/verify.py` for how checks are written and composed.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from commdesk_billing.modules.ledger.verify import Check, VerifyReport, check, rows


@check("auto_recharge_pending")
async def pending_credits(conn: AsyncConnection, report: VerifyReport) -> None:
    """`wallets.pending_credits` = the credits of the wallet's pending recharges; a wallet
    with auto-recharge off has no trigger level."""
    for r in await rows(
        conn,
        """
        SELECT w.id, w.pending_credits,
               coalesce((SELECT sum(credits) FROM auto_recharges a
                          WHERE a.wallet_id = w.id
                            AND a.status IN ('pending', 'notified')), 0) AS expected
          FROM wallets w
         WHERE w.pending_credits <> coalesce((SELECT sum(credits) FROM auto_recharges a
                          WHERE a.wallet_id = w.id
                            AND a.status IN ('pending', 'notified')), 0)
            OR (NOT w.auto_recharge_enabled AND w.auto_recharge_trigger IS NOT NULL)""",
        {},
    ):
        report.add(
            "auto_recharge_pending",
            f"wallet {r.id}",
            f"shows {r.pending_credits} pending credits; its pending recharges bring "
            f"{r.expected} (or a trigger level is set with auto-recharge off)",
        )


CHECKS: tuple[Check, ...] = (pending_credits,)
