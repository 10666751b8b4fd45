"""Auto-recharge's check for `ledger verify`: a wallet shows as pending exactly the credits
of its pending recharge (none, or one: never two in flight), and the wallet's own copy of
the settings (what a debit's crossing reads) says what the settings say.

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
    # The crossing reads the wallet's columns, the member and the jobs the settings: a
    # difference fires recharges nobody asked for, or none that were asked for.
    for r in await rows(
        conn,
        """
        SELECT w.id, w.auto_recharge_enabled AS wallet_on, s.enabled AS settings_on
          FROM wallets w LEFT JOIN auto_recharge_settings s ON s.wallet_id = w.id
         WHERE w.auto_recharge_enabled <> coalesce(s.enabled, false)
            OR (s.enabled AND w.auto_recharge_threshold IS DISTINCT FROM s.threshold)""",
        {},
    ):
        report.add(
            "auto_recharge_pending",
            f"wallet {r.id}",
            f"the wallet has auto-recharge {'on' if r.wallet_on else 'off'}, its settings "
            f"{'on' if r.settings_on else 'off' if r.settings_on is not None else 'absent'} "
            "(or another threshold)",
        )


CHECKS: tuple[Check, ...] = (pending_credits,)
